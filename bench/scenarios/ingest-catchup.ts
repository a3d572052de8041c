import type { Client } from "@xmpp/client";
import { catchUp, PAGES_IN_FLIGHT } from "../../src/ingest/catch-up.js";
import { localTo } from "../../src/ingest/leader.js";
import { Observer } from "../../src/ingest/observer.js";
import { Pipeline } from "../../src/ingest/pipeline.js";
import { IngestStats } from "../../src/ingest/stats.js";
import { StoreUpkeep } from "../../src/store/upkeep.js";
import {
  connectUser,
  createUsers,
  type EjabberdInstance,
  type TestUser,
} from "../../test/helpers/ejabberd.js";
import { capturingLogger } from "../../test/helpers/log.js";
import { waitFor } from "../../test/helpers/wait.js";
import { archiveCount, observerSession } from "../archive.js";
import { withPeakRss } from "../context.js";
import { type Figure, ratioOf, type Scenario } from "../scenario.js";
import { Traffic } from "../traffic.js";

/** Sends `n` stanzas from the senders' sessions, each as fast as its socket takes them. */
async function fill(
  i: EjabberdInstance,
  senders: TestUser[],
  recipients: TestUser[],
  n: number,
  signal: AbortSignal,
): Promise<void> {
  const sessions: Client[] = [];
  try {
    for (const s of senders) sessions.push(await connectUser(i, s, "phone"));
    const share = Math.ceil(n / senders.length);
    await Promise.all(
      sessions.map(async (xmpp, k) => {
        const sender = senders[k] as TestUser;
        const peers = recipients.filter((_, j) => (j + k) % 4 === 0);
        const traffic = new Traffic({
          pairs: peers.map((p) => [sender.jid, p.jid]),
          oneWay: true,
          seed: 100 + k,
        });
        const count = Math.min(share, n - k * share);
        for (let m = 0; m < count && !signal.aborted; m++) await xmpp.send(traffic.next().stanza);
      }),
    );
  } finally {
    await Promise.all(sessions.map((s) => s.stop().catch(() => {})));
  }
}

export const ingestCatchUp: Scenario = {
  name: "ingest-catchup",
  description: "catch-up of a backlog left in ejabberd while syncside was stopped",
  async run(ctx) {
    const n = ctx.sized(100_000, 1000);
    const senderCount = 10;
    const recipientCount = ctx.sized(200, 20);
    const ej = await ctx.ejabberd();
    const figures: Figure[] = [];

    ctx.progress(`registering ${senderCount} senders and ${recipientCount} recipients`);
    const senders = await createUsers(ej, "cs", senderCount);
    const recipients = await createUsers(ej, "cr", recipientCount);
    const probe = await observerSession(ej, "bench-probe");
    ctx.defer(async () => {
      await probe.stop().catch(() => {});
    });
    const before = await archiveCount(probe);
    const expected = before + n;

    ctx.progress(`sending ${n} stanzas from ${senderCount} clients; no sidecar is running`);
    const fillStarted = performance.now();
    await fill(ej, senders, recipients, n, ctx.signal);
    const sentMs = performance.now() - fillStarted;
    // ejabberd archives seconds behind the sends, and while it still writes, its Mnesia archive
    // over-counts (a read during writes returns some rows twice): wait for a count that holds.
    let last = -1;
    await waitFor(
      async () => {
        // waitFor retries on errors; an interrupted run ends the wait and fails below instead.
        if (ctx.signal.aborted) return true;
        const now = await archiveCount(probe);
        const settled = now >= expected && now === last;
        last = now;
        return settled;
      },
      {
        timeoutMs: 900_000,
        intervalMs: 2000,
        what: `${expected} copies in the observer's archive`,
      },
    );
    if (ctx.signal.aborted) throw new Error("interrupted while ejabberd was archiving");
    const fillMs = performance.now() - fillStarted;
    const archived = await archiveCount(probe);
    ctx.progress(`archive holds ${archived} copies; catching up into an empty store`);

    const db = await ctx.postgres();
    const domains = new Set([ej.domain]);
    const stats = new IngestStats();
    // Ingest's log lines, parsed: the bench reads its own account of the run from them.
    const { logger, lines } = capturingLogger();
    const checkpointSource = `observer:${ej.observerJid}`;
    const pipeline = new Pipeline({
      store: db.store,
      logger,
      stats,
      write: { isLocal: localTo(domains), callRingTimeoutMs: 60_000 },
      trustedOrigins: domains,
      checkpointSource,
      // As the leader runs it (leader.ts): a fresh store is analyzed once it holds some rows.
      upkeep: new StoreUpkeep({ store: db.store, logger }),
    });
    const observer = new Observer({
      service: ej.service,
      domain: ej.domain,
      jid: ej.observerJid,
      password: ej.observerPassword,
      resource: "syncside",
      store: db.store,
      pipeline,
      stats,
      logger,
      checkpointSource,
      lookBackMs: 30_000,
    });
    ctx.defer(() => observer.stop());
    const started = performance.now();
    const run = await withPeakRss(async () => {
      void observer.start();
      await waitFor(() => lines.some((l) => l.msg === "caught up; following live copies"), {
        timeoutMs: 900_000,
        intervalMs: 20,
        what: "catch-up to finish",
      });
    });
    const totalMs = performance.now() - started;
    await observer.stop();
    pipeline.close();
    const online = lines.find((l) => l.msg === "observer online, catching up");
    const done = lines.find((l) => l.msg === "caught up; following live copies");
    const catchUpMs = Number(done?.ms ?? totalMs);
    const pages = Number(done?.pages ?? 0);
    const commitWaitMs = Number(done?.commitWaitMs ?? 0);
    const copiesRead = Number(done?.copies ?? 0);
    if (!online || stats.rejects.size > 0) {
      throw new Error(`catch-up went wrong: rejects ${[...stats.rejects]}`);
    }
    // Every stanza sent is one event on each side (both are local): nothing lost, nothing twice.
    // The empty checkpoint reads the whole archive, earlier scenarios' copies included.
    const complete = stats.eventsWritten === 2 * archived;

    ctx.progress("baseline: reading the same archive page by page, committing nothing");
    const reader = await observerSession(ej, "bench-reader");
    const raw = await catchUp({ xmpp: reader, logger, after: null, commit: async () => {} });
    await reader.stop().catch(() => {});

    const perSecond = (x: number, ms: number) => (x / ms) * 1000;
    const sourceEvents = stats.eventsWritten / 2;
    figures.push(
      {
        name: "catchup.events_per_s",
        value: perSecond(sourceEvents, catchUpMs),
        unit: "events/s",
        note: "conversation events committed per second of catch-up (login excluded)",
      },
      {
        name: "catchup.rows_per_s",
        value: perSecond(stats.eventsWritten, catchUpMs),
        unit: "rows/s",
        note: "event rows, both local sides",
      },
      { name: "catchup.copies_per_s", value: perSecond(copiesRead, catchUpMs), unit: "copies/s" },
      { name: "catchup.ms", value: catchUpMs, unit: "ms", note: `${pages} MAM pages` },
      {
        name: "catchup.ejabberd_ms",
        value: catchUpMs - commitWaitMs,
        unit: "ms",
        note: "waiting for MAM pages (incl. xmpp.js parsing them in this process), while earlier pages commit",
      },
      {
        name: "catchup.syncside_ms",
        value: commitWaitMs,
        unit: "ms",
        note: `waiting for commits: the pages read ahead (${PAGES_IN_FLIGHT}) all still committing, and the last ones`,
      },
      {
        name: "catchup.syncside_share",
        value: (commitWaitMs / catchUpMs) * 100,
        unit: "%",
      },
      {
        name: "catchup.login_ms",
        value: totalMs - catchUpMs,
        unit: "ms",
        note: "observer login (SCRAM) and MAM prefs, before the first page",
      },
      { name: "catchup.peak_rss", value: run.peakRssMb, unit: "MB", note: "whole process" },
      {
        name: "baseline.mam_read.copies_per_s",
        value: perSecond(raw.copies, raw.ms),
        unit: "copies/s",
        note: `the same archive paged with nothing committed (${raw.pages} pages, ${raw.ms} ms)`,
      },
      {
        name: "fill.copies_per_s",
        value: perSecond(n, fillMs),
        unit: "copies/s",
        note: `ejabberd taking ${senderCount} clients' stanzas into the archive (sent in ${Math.round(sentMs)} ms)`,
      },
    );
    return {
      params: {
        copies: n,
        archived,
        copies_read: copiesRead,
        duplicates_skipped: stats.duplicates,
        senders: senderCount,
        recipients: recipientCount,
      },
      figures,
      ratios: [
        ratioOf(
          figures,
          "catch-up vs bare MAM read",
          "catchup.copies_per_s",
          "baseline.mam_read.copies_per_s",
        ),
      ],
      targets: [],
      notes: [
        "the backlog is sent by real @xmpp/client sessions through ejabberd with mod_syncside while no sidecar runs; the recipients are offline",
        "then the real Observer + Pipeline catch up from an empty checkpoint into a fresh PostgreSQL database, exactly as at a sidecar's start (two passes: before and after presence)",
        "split: time spent awaiting the pipeline's commit of each page is syncside's; the rest of the catch-up is waiting for ejabberd's next page (the query is sent only after the commit)",
        "baseline: the same archive read with catchUp() and a no-op commit — how fast ejabberd alone hands out the archive; the ratio is how close ingest comes to it",
        "ejabberd keeps its archive in PostgreSQL (EJABBERD_SQL), as in production; with Mnesia's disc-only MAM table the observer's archive slows with every copy it holds",
        "page overlap (after = last − 1) and the second pass after presence re-read copies; those are the duplicates skipped",
        complete
          ? `store check: ${stats.eventsWritten} event rows = 2 × ${archived} archived copies`
          : `STORE MISMATCH: ${stats.eventsWritten} event rows for ${archived} archived copies`,
      ],
    };
  },
};
