import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { cleanupFaultScenarios, runFaultScenario } from "../helpers/fault-scenario.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
// Small enough for CI; `npm run bench -- ingest-faults` runs the same scenario with 10,000.
const stanzas = Number(process.env.FAULT_STANZAS ?? 1500);

describe("ingest under faults", () => {
  afterAll(() => cleanupFaultScenarios());

  it(
    "stores exactly what the recipients received through kill -9s and restarts of every part",
    async () => {
      const report = await runFaultScenario({
        root,
        stanzas,
        log: (line) => console.log(`[faults] ${line}`),
      });
      console.log(
        `[faults] ${JSON.stringify({ ...report, mismatches: report.mismatches.length })}`,
      );
      expect(report.sent).toBe(stanzas);
      expect(report.received).toBe(stanzas);
      expect(report.bodyless).toBeGreaterThan(0);
      expect(report.faults.map((f) => f.what)).toEqual([
        "syncside kill -9",
        "syncside restarted",
        "ejabberd restarted",
        "PostgreSQL restarted",
        "syncside kill -9",
        "syncside restarted",
      ]);
      expect({
        storedIn: report.storedIn,
        storedOut: report.storedOut,
        missing: report.missing,
        extra: report.extra,
        duplicated: report.duplicated,
        wrongKind: report.wrongKind,
        seqGaps: report.seqGaps,
      }).toEqual({
        storedIn: stanzas,
        storedOut: stanzas,
        missing: 0,
        extra: 0,
        duplicated: 0,
        wrongKind: 0,
        seqGaps: 0,
      });
    },
    // Setup and the restarts take ~30 s whatever the size; then ~5 ms per stanza, generously.
    60_000 * 5 + stanzas * 20,
  );
});
