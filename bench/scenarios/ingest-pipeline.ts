import { cpus } from "node:os";
import { count } from "drizzle-orm";
import { DEFAULT_INGEST_LANES } from "../../src/config.js";
import { MAM_PAGE, PAGES_IN_FLIGHT } from "../../src/ingest/catch-up.js";
import { localTo } from "../../src/ingest/leader.js";
import { parseCopy } from "../../src/ingest/parse.js";
import { DEFAULT_MAX_BATCH, type IngestItem, Pipeline } from "../../src/ingest/pipeline.js";
import { IngestStats } from "../../src/ingest/stats.js";
import { createLogger } from "../../src/logger.js";
import type { Store } from "../../src/store/db.js";
import { events } from "../../src/store/schema/events.js";
import { StoreUpkeep } from "../../src/store/upkeep.js";
import { machineCpuMs, withPeakRss } from "../context.js";
import { CopyRecorder, type RecordedCopy, StanzaReader } from "../copies.js";
import { type Figure, ratioOf, type Scenario, targetOf } from "../scenario.js";
import { MIX, random, Traffic } from "../traffic.js";

const DOMAIN = "bench.test";
const OBSERVER = `observer@${DOMAIN}`;

/** A pool of accounts, each in a handful of conversations, as [x, y] bare JIDs. */
export function conversationsOf(accounts: number, perAccount: number, seed: number) {
  const rand = random(seed);
  const jid = (i: number) => `u${i.toString().padStart(5, "0")}@${DOMAIN}`;
  const pairs: [string, string][] = [];
  for (let i = 0; i < accounts; i++) {
    for (let k = 0; k < perAccount / 2; k++) {
      const j = (i + 1 + Math.floor(rand() * (accounts - 1))) % accounts;
      pairs.push([jid(i), jid(j)]);
    }
  }
  return pairs;
}

function record(n: number, accounts: number): RecordedCopy[] {
  const traffic = new Traffic({ pairs: conversationsOf(accounts, 10, 7), seed: 11 });
  const recorder = new CopyRecorder(DOMAIN, OBSERVER);
  const rand = random(13);
  const copies: RecordedCopy[] = [];
  for (let i = 0; i < n; i++) copies.push(recorder.record(traffic.next(), rand));
  return copies;
}

interface FeedOptions {
  /** copies handed over per push: MAM_PAGE is one MAM page, 1 is a live copy */
  page: number;
  /** pushes not yet committed before the feed waits (catch-up waits for each page) */
  inflight: number;
  maxBatch?: number;
}

interface FeedResult {
  ms: number;
  /** CPU time of this process (parsing, folding, the driver) while it ran */
  processCpuMs: number;
  /** CPU time of the whole machine while it ran: this process, PostgreSQL, the kernel */
  machineCpuMs: number;
  stats: IngestStats;
  /** transactions: one per batch and lane */
  batches: number;
  /** wall time inside appendLane (the transactions), summed over them */
  commitMs: number;
}

/** Runs copies through the real path: stream parser → Pipeline (parse, batch) → appendBatch. */
/** Pages as catch-up reads them, as many awaiting commit as it lets. */
const AS_CATCH_UP: FeedOptions = { page: MAM_PAGE, inflight: PAGES_IN_FLIGHT };

async function feed(store: Store, copies: RecordedCopy[], o: FeedOptions): Promise<FeedResult> {
  const domains = new Set([DOMAIN]);
  const stats = new IngestStats();
  let batches = 0;
  let commitMs = 0;
  const record = stats.recordBatch.bind(stats);
  stats.recordBatch = (result, ms) => {
    batches++;
    commitMs += ms;
    record(result, ms);
  };
  const logger = createLogger(process.env.BENCH_LOG_LEVEL ?? "silent");
  const pipeline = new Pipeline({
    store,
    logger,
    stats,
    write: { isLocal: localTo(domains), callRingTimeoutMs: 60_000 },
    trustedOrigins: domains,
    checkpointSource: `observer:${OBSERVER}`,
    ...(o.maxBatch ? { maxBatch: o.maxBatch } : {}),
    // As the leader runs it (leader.ts): a fresh store is analyzed once it holds some rows.
    upkeep: new StoreUpkeep({ store, logger }),
  });
  const reader = new StanzaReader();
  const pending: Promise<void>[] = [];
  const cpuBefore = process.cpuUsage();
  const machineBefore = machineCpuMs();
  const started = performance.now();
  for (let i = 0; i < copies.length; i += o.page) {
    const items: IngestItem[] = copies
      .slice(i, i + o.page)
      .map((c) => ({ copy: reader.read(c.wire), archiveId: c.archiveId }));
    pending.push(pipeline.push(items));
    if (pending.length >= o.inflight) await pending.shift();
  }
  await Promise.all(pending);
  const ms = performance.now() - started;
  const cpu = process.cpuUsage(cpuBefore);
  const machine = machineCpuMs() - machineBefore;
  pipeline.close();
  if (stats.rejects.size > 0) throw new Error(`copies rejected: ${[...stats.rejects]}`);
  return {
    ms,
    processCpuMs: (cpu.user + cpu.system) / 1000,
    machineCpuMs: machine,
    stats,
    batches,
    commitMs,
  };
}

async function storedEvents(store: Store): Promise<number> {
  const [row] = await store.db.select({ n: count() }).from(events);
  return Number(row?.n ?? 0);
}

export const ingestPipeline: Scenario = {
  name: "ingest-pipeline",
  description: "recorded copies → parse → batch → commit",
  async run(ctx) {
    const n = ctx.sized(100_000, 1000);
    const accounts = ctx.sized(1000, 50);
    const naiveN = Math.min(n, ctx.sized(2000, 200));
    const liteN = Math.min(n, ctx.sized(20_000, 1000));
    ctx.progress(`recording ${n} copies over ${accounts} accounts`);
    const copies = record(n, accounts);
    const figures: Figure[] = [];
    const notes: string[] = [];

    ctx.progress(`pipeline on PostgreSQL: ${n} copies in MAM-sized pages`);
    const pg = await ctx.postgres();
    const onPg = await withPeakRss(() => feed(pg.store, copies, AS_CATCH_UP));
    const pgRows = await storedEvents(pg.store);
    if (pgRows !== onPg.value.stats.eventsWritten) {
      throw new Error(`${pgRows} event rows stored, ${onPg.value.stats.eventsWritten} reported`);
    }

    ctx.progress(`pipeline on PGlite: ${liteN} copies`);
    const lite = await ctx.pglite();
    const onLite = await withPeakRss(() => feed(lite.store, copies.slice(0, liteN), AS_CATCH_UP));

    ctx.progress(`baseline: ${naiveN} copies, one transaction each`);
    const naivePg = await ctx.postgres();
    const naive = await feed(naivePg.store, copies.slice(0, naiveN), {
      page: 1,
      inflight: 1,
      maxBatch: 1,
    });

    // Last: the Elements it leaves to the GC would otherwise inflate the pipeline runs' RSS.
    ctx.progress("parse only (stream parser + parseCopy)");
    const reader = new StanzaReader();
    let parsedEvents = 0;
    const parseStarted = performance.now();
    for (const c of copies) {
      const parsed = parseCopy(reader.read(c.wire));
      if (parsed.ok) parsedEvents += parsed.copy.events.length;
    }
    const parseMs = performance.now() - parseStarted;

    const perSecond = (x: number, ms: number) => (x / ms) * 1000;
    const sourceEvents = (share: number) => Math.round(parsedEvents * share);
    const pgStats = onPg.value.stats;
    // Each lane commits its share of every batch in a transaction of its own.
    const pgBatches = onPg.value.batches / DEFAULT_INGEST_LANES;
    figures.push(
      {
        name: "pipeline.pg.events_per_s",
        value: perSecond(parsedEvents, onPg.value.ms),
        unit: "events/s",
        note: "conversation events (one per stanza event) committed on PostgreSQL",
      },
      {
        name: "pipeline.pg.rows_per_s",
        value: perSecond(pgStats.eventsWritten, onPg.value.ms),
        unit: "rows/s",
        note: "event rows: both local sides of each event (alice's out, bob's in)",
      },
      {
        name: "pipeline.pg.copies_per_s",
        value: perSecond(n, onPg.value.ms),
        unit: "copies/s",
      },
      {
        name: "pipeline.pg.batch_ms",
        value: onPg.value.ms / pgBatches,
        unit: "ms",
        note: `mean wall time per batch of ~${Math.round(n / pgBatches)} copies, its ${DEFAULT_INGEST_LANES} lanes written side by side`,
      },
      {
        name: "pipeline.pg.lane_commit_ms",
        value: onPg.value.commitMs / onPg.value.batches,
        unit: "ms",
        note: "one lane's transaction (appendLane); a lane starts its next batch without waiting for the others",
      },
      {
        name: "pipeline.pg.parse_ms",
        value: parseMs / pgBatches,
        unit: "ms",
        note: "parsing a batch's copies (from the parse-only run), while earlier batches commit",
      },
      {
        name: "pipeline.pg.process_cpu_ms_per_1k",
        value: (onPg.value.processCpuMs / parsedEvents) * 1000,
        unit: "ms",
        note: "CPU of this process per 1,000 events: stream parsing, parseCopy, folding, the driver (what a sidecar spends)",
      },
      {
        name: "pipeline.pg.other_cpu_ms_per_1k",
        value: ((onPg.value.machineCpuMs - onPg.value.processCpuMs) / parsedEvents) * 1000,
        unit: "ms",
        note: "CPU of everything else on the machine per 1,000 events (/proc/stat): PostgreSQL, the kernel",
      },
      {
        name: "pipeline.pg.machine_busy",
        value: (onPg.value.machineCpuMs / (onPg.value.ms * cpus().length)) * 100,
        unit: "%",
        note: `of the ${cpus().length} cores' time while the run lasted`,
      },
      {
        name: "pipeline.pg.peak_rss",
        value: onPg.peakRssMb,
        unit: "MB",
        note: `whole process, ${onPg.startRssMb} MB before the run (input held in memory)`,
      },
      {
        name: "pipeline.pglite.events_per_s",
        value: perSecond(sourceEvents(liteN / n), onLite.value.ms),
        unit: "events/s",
        note: `the first ${liteN} copies on embedded PGlite (on disk, same process)`,
      },
      { name: "pipeline.pglite.peak_rss", value: onLite.peakRssMb, unit: "MB" },
      {
        name: "baseline.one_tx_per_copy.events_per_s",
        value: perSecond(sourceEvents(naiveN / n), naive.ms),
        unit: "events/s",
        note: `the same path without batching, on ${naiveN} copies`,
      },
      {
        name: "ceiling.parse_only.events_per_s",
        value: perSecond(parsedEvents, parseMs),
        unit: "events/s",
        note: "XML stream parser + parseCopy, no database",
      },
    );
    notes.push(
      `input: ${n} copies recorded in mod_syncside's wire shape (MAM result form), ${parsedEvents} events, ${pgStats.eventsWritten} rows; mix ${Object.entries(
        MIX,
      )
        .map(([k, v]) => `${k} ${Math.round(v * 100)}%`)
        .join(", ")}; both sides local.`,
      `fed as catch-up does: pages of ${MAM_PAGE} copies pushed into the real Pipeline (its defaults: batches of up to ${DEFAULT_MAX_BATCH} copies, ${DEFAULT_INGEST_LANES} lanes on PostgreSQL, 1 on PGlite), at most ${PAGES_IN_FLIGHT} pages awaiting commit.`,
      "baseline: the same Pipeline and appendBatch with maxBatch 1 and each copy awaited — one transaction per copy, what ingest would do without batching. The ratio is what batching buys; the parse-only ceiling is what the CPU allows before any database work.",
      `peak RSS is the whole bench process, which also holds the ${n} recorded copies; the growth over the RSS before the run is what ingest adds.`,
    );
    return {
      params: {
        copies: n,
        accounts,
        conversations: accounts * 5,
        pglite_copies: liteN,
        baseline_copies: naiveN,
      },
      figures,
      ratios: [
        ratioOf(
          figures,
          "batched vs one tx per copy",
          "pipeline.pg.events_per_s",
          "baseline.one_tx_per_copy.events_per_s",
        ),
        ratioOf(
          figures,
          "share of the parse-only ceiling",
          "pipeline.pg.events_per_s",
          "ceiling.parse_only.events_per_s",
        ),
        ratioOf(
          figures,
          "PGlite vs PostgreSQL",
          "pipeline.pglite.events_per_s",
          "pipeline.pg.events_per_s",
        ),
      ],
      targets: [targetOf(figures, "pipeline.pg.events_per_s", ">=", 10_000)],
      notes,
    };
  },
};
