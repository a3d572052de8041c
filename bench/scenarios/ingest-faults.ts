import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { cleanupFaultScenarios, runFaultScenario } from "../../test/helpers/fault-scenario.js";
import { type Figure, ratioOf, type Scenario, targetOf } from "../scenario.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/**
 * The fault test of the suite at full size: a burst from several real clients while syncside is
 * killed with SIGKILL and restarted twice, ejabberd restarted once and PostgreSQL restarted once;
 * afterwards the store must hold exactly what the recipient clients received.
 */
export const ingestFaults: Scenario = {
  name: "ingest-faults",
  description: "a 10,000-stanza burst through kill -9s and restarts of every part: nothing lost",
  async run(ctx) {
    const stanzas = ctx.sized(10_000, 400);
    const senders = 4;
    // ejabberd keeps at most 5,000 offline messages per account; the last recipient is offline.
    const recipients = Math.max(4, Math.ceil(stanzas / 4000));
    ctx.defer(() => cleanupFaultScenarios());
    ctx.progress(
      `${stanzas} stanzas from ${senders} senders to ${recipients} recipients (the last one offline), with faults`,
    );
    const report = await runFaultScenario({
      root,
      stanzas,
      senders,
      recipients,
      log: (line) => ctx.progress(`  ${line}`),
    });
    const figures: Figure[] = [
      {
        name: "sent",
        value: report.sent,
        unit: "stanzas",
        note: "acknowledged by the server (a ping answered after them)",
      },
      {
        name: "received",
        value: report.received,
        unit: "stanzas",
        note: `distinct, by the recipient clients, live or from offline storage (${report.receivedAgain} delivered again by stream management)`,
      },
      {
        name: "stored.in",
        value: report.storedIn,
        unit: "events",
        note: "in the store on the recipients' side",
      },
      {
        name: "stored.out",
        value: report.storedOut,
        unit: "events",
        note: "in the store on the senders' side",
      },
      { name: "missing", value: report.missing, unit: "events", note: "received, not stored" },
      {
        name: "duplicated",
        value: report.duplicated,
        unit: "events",
        note: "stored more than once",
      },
      { name: "extra", value: report.extra, unit: "events", note: "stored, never received" },
      {
        name: "seq_gaps",
        value: report.seqGaps,
        unit: "",
        note: "holes in an account's seq",
      },
      {
        name: "bodyless",
        value: report.bodyless,
        unit: "stanzas",
        note: "reactions and markers among them: no archive would keep them",
      },
      {
        name: "burst.ms",
        value: report.ms.burst,
        unit: "ms",
        note: report.faults.map((f) => `${f.what} after ${f.at}`).join(", "),
      },
      {
        name: "settle.ms",
        value: report.ms.settle,
        unit: "ms",
        note: "from the burst's end to the store holding everything",
      },
    ];
    return {
      params: { stanzas, senders, recipients },
      figures,
      ratios: [
        ratioOf(figures, "stored (recipients' side) / received", "stored.in", "received"),
        ratioOf(figures, "stored (senders' side) / sent", "stored.out", "sent"),
      ],
      targets: [
        targetOf(figures, "missing", "<=", 0),
        targetOf(figures, "duplicated", "<=", 0),
        targetOf(figures, "extra", "<=", 0),
        targetOf(figures, "seq_gaps", "<=", 0),
      ],
      notes: [
        "the same rig as test/integration/faults.test.ts (which runs 1,500 stanzas in CI): a private PostgreSQL cluster and a private ejabberd with mod_syncside, syncside as a process of its own (src/main.ts), senders and recipients as @xmpp/client sessions",
        "faults, in order, with the stanza count into the burst at which each came: see burst.ms",
        "the mix: messages, reactions and displayed markers (bodyless ones included); every account's events are compared one by one with what its clients received",
      ],
    };
  },
};
