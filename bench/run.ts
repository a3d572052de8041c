import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { BenchSession, progress } from "./context.js";
import { machine, render, writeResult } from "./report.js";
import type { Scenario } from "./scenario.js";
import { ingestCatchUp } from "./scenarios/ingest-catchup.js";
import { ingestFaults } from "./scenarios/ingest-faults.js";
import { ingestLiveBurst } from "./scenarios/ingest-live-burst.js";
import { ingestLiveLag } from "./scenarios/ingest-live-lag.js";
import { ingestPipeline } from "./scenarios/ingest-pipeline.js";
import { longPolls } from "./scenarios/long-polls.js";
import { productClaim } from "./scenarios/product-claim.js";
import { syncScale } from "./scenarios/sync-scale.js";

/** Every scenario, in the order a full run takes them. */
// Live lag and burst run before catch-up fills ejabberd's archive.
const SCENARIOS: Scenario[] = [
  ingestPipeline,
  ingestLiveLag,
  ingestLiveBurst,
  ingestCatchUp,
  ingestFaults,
  syncScale,
  productClaim,
  longPolls,
];

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const resultsDir = join(root, "bench", "results");

function usage(): string {
  const names = SCENARIOS.map((s) => `  ${s.name.padEnd(18)} ${s.description}`).join("\n");
  return `usage: npm run bench -- [scenario...]   (default: all)\n\n${names}\n\nenvironment: BENCH_SCALE=0.1 for a quick run (default 1); BENCH_SCALE_<SCENARIO>, e.g.\nBENCH_SCALE_INGEST_CATCHUP=0.05, sizes one scenario apart;\nBENCH_LOG_LEVEL=info shows the sidecar's log (with the access log) and the pipeline's\n`;
}

/**
 * BENCH_SCALE_INGEST_CATCHUP=0.05 sizes one scenario apart from the rest; without either
 * variable, a scenario's own default scale applies.
 */
function scaleFor(scenario: Scenario, fallback: number): number {
  const own = process.env[`BENCH_SCALE_${scenario.name.toUpperCase().replaceAll("-", "_")}`];
  const implicit = process.env.BENCH_SCALE === undefined ? scenario.defaultScale : undefined;
  const value = own === undefined ? (implicit ?? fallback) : Number(own);
  return value > 0 ? value : fallback;
}

function select(args: string[]): Scenario[] {
  if (args.length === 0) return SCENARIOS;
  return args.map((name) => {
    const scenario = SCENARIOS.find((s) => s.name === name);
    if (!scenario) {
      process.stderr.write(`unknown scenario: ${name}\n\n${usage()}`);
      process.exit(2);
    }
    return scenario;
  });
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  if (args.includes("-h") || args.includes("--help")) {
    process.stdout.write(usage());
    return 0;
  }
  const scenarios = select(args);
  const scale = Number(process.env.BENCH_SCALE ?? 1);
  if (!(scale > 0)) {
    process.stderr.write(`BENCH_SCALE must be a positive number, got ${process.env.BENCH_SCALE}\n`);
    return 2;
  }

  const interrupt = new AbortController();
  const session = new BenchSession(root, scale, interrupt.signal);
  let interrupted = 0;
  const onSignal = (signal: string) => {
    interrupted++;
    if (interrupted > 1) process.exit(130);
    progress(`${signal}: stopping after cleanup (again to quit at once)`);
    interrupt.abort();
  };
  process.on("SIGINT", () => onSignal("SIGINT"));
  // xmpp.js leaves a socket without an error listener when its stop() times out; ejabberd's
  // shutdown then resets it. A reset socket is no reason to abandon the run and its cleanup.
  process.on("uncaughtException", (err: NodeJS.ErrnoException) => {
    if (err.code === "ECONNRESET" || err.code === "EPIPE") {
      progress(`ignored a ${err.code} on a closed XMPP session`);
      return;
    }
    process.stderr.write(`bench: ${err.stack ?? String(err)}\n`);
    process.exit(1);
  });
  process.on("SIGTERM", () => onSignal("SIGTERM"));

  const m = machine();
  process.stdout.write(
    `syncside bench — ${m.cpus} × ${m.cpuModel}, ${m.memoryMb} MB, node ${m.node}, scale ${scale}\n`,
  );
  let failures = 0;
  try {
    for (const scenario of scenarios) {
      if (interrupt.signal.aborted) break;
      progress(`scenario ${scenario.name}`);
      const ctx = session.scenario(scaleFor(scenario, scale));
      const startedAt = new Date();
      const started = performance.now();
      try {
        const result = await scenario.run(ctx);
        const elapsedMs = performance.now() - started;
        process.stdout.write(render(scenario, result, elapsedMs));
        const file = await writeResult(resultsDir, scenario, result, {
          scale: ctx.scale,
          startedAt,
          elapsedMs,
        });
        process.stdout.write(`→ ${relative(process.cwd(), file)}\n`);
      } catch (err) {
        failures++;
        process.stderr.write(
          `scenario ${scenario.name} failed: ${err instanceof Error ? err.stack : String(err)}\n`,
        );
      } finally {
        await ctx.finish();
      }
    }
  } finally {
    await session.close();
  }
  if (interrupt.signal.aborted) return 130;
  return failures > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
