import { mkdir, writeFile } from "node:fs/promises";
import { cpus, freemem, loadavg, platform, release, totalmem } from "node:os";
import { join } from "node:path";
import type { Scenario, ScenarioResult } from "./scenario.js";

export interface Machine {
  cpus: number;
  cpuModel: string;
  memoryMb: number;
  freeMemoryMb: number;
  node: string;
  platform: string;
  /** 1/5/15-minute load averages: other work on the machine bends every figure */
  loadAverage: number[];
}

export function machine(): Machine {
  const list = cpus();
  return {
    cpus: list.length,
    cpuModel: list[0]?.model.trim() ?? "unknown",
    memoryMb: Math.round(totalmem() / 1024 / 1024),
    freeMemoryMb: Math.round(freemem() / 1024 / 1024),
    node: process.version,
    platform: `${platform()} ${release()}`,
    loadAverage: loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

function format(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : 2;
  return value.toLocaleString("en-US", { maximumFractionDigits: digits });
}

function table(header: string[], rows: string[][], rightAligned: number[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) =>
        rightAligned.includes(i) ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0),
      )
      .join("  ")
      .trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

/** The human-readable report of one scenario, for stdout. */
export function render(scenario: Scenario, result: ScenarioResult, elapsedMs: number): string {
  const out: string[] = [];
  out.push(`\n== ${scenario.name} — ${scenario.description}`);
  const params = Object.entries(result.params)
    .map(([k, v]) => `${k}=${typeof v === "number" ? format(v) : v}`)
    .join("  ");
  const load = machine().loadAverage.join(" ");
  out.push(`   ${params}  (took ${format(elapsedMs / 1000)} s, load average ${load})\n`);
  out.push(
    table(
      ["figure", "value", "unit", "note"],
      result.figures.map((f) => [f.name, format(f.value), f.unit, f.note ?? ""]),
      [1],
    ),
  );
  if (result.ratios.length > 0) {
    out.push("");
    out.push(
      table(
        ["ratio", "value", "of"],
        result.ratios.map((r) => [r.name, `${format(r.value)}×`, `${r.figure} / ${r.baseline}`]),
        [1],
      ),
    );
  }
  if (result.targets.length > 0) {
    out.push("");
    for (const t of result.targets) {
      out.push(`target ${t.figure} ${t.op} ${format(t.value)}: ${t.met ? "met" : "NOT met"}`);
    }
  }
  if (result.notes.length > 0) {
    out.push("");
    for (const note of result.notes) out.push(`* ${note}`);
  }
  return `${out.join("\n")}\n`;
}

/** bench/results/<name>.json: the figures with what they were measured on. */
export async function writeResult(
  dir: string,
  scenario: Scenario,
  result: ScenarioResult,
  extra: { scale: number; startedAt: Date; elapsedMs: number },
): Promise<string> {
  await mkdir(dir, { recursive: true });
  const file = join(dir, `${scenario.name}.json`);
  const body = {
    name: scenario.name,
    description: scenario.description,
    date: extra.startedAt.toISOString(),
    elapsedMs: Math.round(extra.elapsedMs),
    scale: extra.scale,
    machine: machine(),
    ...result,
  };
  await writeFile(file, `${JSON.stringify(body, null, 2)}\n`);
  return file;
}
