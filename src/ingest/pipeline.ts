import type { Element } from "@xmpp/xml";
import { DEFAULT_INGEST_LANES } from "../config.js";
import type { Logger } from "../logger.js";
import { sleep } from "../retry.js";
import { compareArchiveIds, dropOtherLanes, lowestArchiveId } from "../store/checkpoint.js";
import { isRefusedContent, type Store } from "../store/db.js";
import { appendLane, type BatchResult, type WriteOptions } from "../store/events.js";
import type { StoreUpkeep } from "../store/upkeep.js";
import { type ParsedCopy, parseCopy } from "./parse.js";
import type { IngestStats } from "./stats.js";

/** One copy as it reached the observer: live, or as a result of an archive query. */
export interface IngestItem {
  copy: Element;
  /** the observer's own archive id of this copy, when known */
  archiveId: string | null;
}

export interface PipelineOptions {
  store: Store;
  logger: Logger;
  stats: IngestStats;
  write: WriteOptions;
  /** the server domains whose copies are trusted: anyone can send the observer a lookalike */
  trustedOrigins: ReadonlySet<string>;
  checkpointSource: string;
  /** copies per batch at most (default DEFAULT_MAX_BATCH) */
  maxBatch?: number;
  /** transactions a batch is split into by account, written side by side; PGlite has one */
  lanes?: number;
  /**
   * how long a copy reaching an idle lane waits for company before its batch is written
   * (default 0: at once; copies that come while a batch is being written form the next one)
   */
  lingerMs?: number;
  /** told what each batch wrote, to keep the store's statistics and tables in shape */
  upkeep?: StoreUpkeep;
}

/**
 * Copies a batch holds at most. Most of a batch's cost in the database is per row, but enough is
 * per batch (each statement's round trip and execution set-up, the account locks, the commit,
 * and one update per conversation however many of its events the batch holds) that on two
 * cores 2,000 copies commit about a third faster per copy than 500, and 4,000 another tenth
 * faster (each lane's transaction then takes ~0.4 s). Batches only grow this large when copies
 * queue up, as in a catch-up: a live copy reaching an idle lane is written at once, and the
 * copies that come while it is being written form the next batch.
 */
export const DEFAULT_MAX_BATCH = 4000;

/** An item once parsed: the copy to write, or null when it was rejected or not trusted. */
interface Parsed {
  copy: ParsedCopy | null;
  archiveId: string | null;
  copyId: unknown;
}

interface Pending {
  items: Parsed[];
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Parses copies and writes them in batches, in arrival order. A batch is split by account into
 * lanes (see appendLane), and each lane writes its share of every batch on its own: one
 * transaction per batch and lane, in order, never waiting for the other lanes, so one lane's
 * work in this process overlaps the others' in the database. A batch the database refuses for
 * its content is split until the one bad copy is found and skipped, so bad input never stops
 * ingest; a batch that fails for any other reason (the database down, a deadlock, a timeout,
 * too many connections) waits and is retried whole, so nothing is lost.
 */
export class Pipeline {
  private closed = false;
  private readonly lanes: LaneWriter[];
  /** each lane's last committed checkpoint, once it has one */
  private readonly positions: (string | null)[];
  /** whether every lane has committed a checkpoint since this pipeline started */
  private lanesSettled = false;

  constructor(private readonly o: PipelineOptions) {
    const maxBatch = o.maxBatch ?? DEFAULT_MAX_BATCH;
    // PGlite has one connection: its transactions would only queue behind each other.
    const lanes = o.store.driver === "pglite" ? 1 : (o.lanes ?? DEFAULT_INGEST_LANES);
    const lingerMs = o.lingerMs ?? 0;
    this.positions = Array.from({ length: lanes }, () => null);
    this.lanes = Array.from(
      { length: lanes },
      (_, lane) =>
        new LaneWriter({
          maxBatch,
          lingerMs,
          write: (items, extra) => this.write(lane, items, extra),
          logger: o.logger,
          stats: o.stats,
          ping: () => o.store.ping(),
        }),
    );
  }

  /**
   * Parses items and queues them; the promise settles once every lane has committed them (or
   * rejected them as bad input). Parsing here rather than in the write lets it run while
   * earlier batches commit.
   */
  push(items: IngestItem[]): Promise<void> {
    if (this.closed) return Promise.reject(new Error("ingest pipeline is closed"));
    if (items.length === 0) return Promise.resolve();
    const parsed = items.map((item) => this.parse(item));
    // A copy the checkpoint has passed is read again (a look-back): it is no lag of the store.
    const passed = this.checkpointed();
    let oldest = Number.POSITIVE_INFINITY;
    for (const p of parsed) {
      if (!p.copy) continue;
      if (passed && p.archiveId && compareArchiveIds(p.archiveId, passed) <= 0) continue;
      oldest = Math.min(oldest, p.copy.sentAt.getTime());
    }
    const done = oldest < Number.POSITIVE_INFINITY ? this.o.stats.pendingFrom(oldest) : () => {};
    return Promise.all(this.lanes.map((lane) => lane.enqueue(parsed)))
      .then(() => undefined)
      .finally(done);
  }

  /** The archive id every lane has committed up to, once each has one. */
  private checkpointed(): string | null {
    if (this.positions.includes(null)) return null;
    return lowestArchiveId(this.positions as string[], (p) => p) ?? null;
  }

  /** Waits for everything queued so far. */
  async drain(): Promise<void> {
    await Promise.all(this.lanes.map((lane) => lane.drain()));
  }

  close(): void {
    this.closed = true;
    for (const lane of this.lanes) lane.close();
  }

  private parse(item: IngestItem): Parsed {
    const result = parseCopy(item.copy);
    const parsed: Parsed = { copy: null, archiveId: item.archiveId, copyId: item.copy.attrs.id };
    if (!result.ok) {
      this.o.stats.reject(result.reason);
      this.o.logger.warn(
        { reason: result.reason, detail: result.detail, copyId: parsed.copyId },
        "copy rejected",
      );
    } else if (!this.o.trustedOrigins.has(result.copy.origin)) {
      this.o.stats.reject("foreign_origin");
      this.o.logger.warn({ origin: result.copy.origin }, "copy from an untrusted origin rejected");
    } else {
      if (result.copy.ignored) this.o.stats.ignore(result.copy.ignored);
      parsed.copy = result.copy;
    }
    return parsed;
  }

  /** Writes one lane's share of items, and the lane's checkpoint. */
  private async write(lane: number, items: Parsed[], extraArchiveId: string | null): Promise<void> {
    const copies: ParsedCopy[] = [];
    let last = extraArchiveId;
    for (const item of items) {
      if (item.archiveId && (!last || compareArchiveIds(item.archiveId, last) > 0))
        last = item.archiveId;
      if (item.copy) copies.push(item.copy);
    }
    const checkpoint = last ? { source: this.o.checkpointSource, position: last } : undefined;
    if (copies.length === 0 && !checkpoint) return;
    const started = performance.now();
    const lanes = this.lanes.length;
    const result: BatchResult = await appendLane(
      this.o.store.db,
      { copies, checkpoint },
      this.o.write,
      lane,
      lanes,
    );
    this.o.stats.recordBatch(result, performance.now() - started);
    for (const erased of result.erased) {
      this.o.logger.info(
        { jid: erased.jid, accountId: erased.accountId, removedAt: erased.removedAt },
        "account removed from ejabberd: mirror, tokens and push devices erased",
      );
    }
    this.o.upkeep?.afterWrite(result.written);
    if (!checkpoint) return;
    this.positions[lane] = checkpoint.position;
    if (!this.lanesSettled && this.positions.every((p) => p !== null)) {
      // Rows of an earlier lane count bound nothing once every current lane has its own.
      this.lanesSettled = true;
      await dropOtherLanes(this.o.store.db, this.o.checkpointSource, lanes);
    }
  }
}

/** Failures in a row, with the database up, after which a batch is written in halves. */
const SPLIT_AFTER_FAILURES = 3;

interface LaneWriterOptions {
  maxBatch: number;
  lingerMs: number;
  /** writes the lane's share of items; `extra`: an archive id to advance the checkpoint to */
  write: (items: Parsed[], extra: string | null) => Promise<void>;
  logger: Logger;
  stats: IngestStats;
  ping: () => Promise<void>;
}

/** One lane's queue: batches of it are written one at a time, in order. */
class LaneWriter {
  private queue: Pending[] = [];
  private queued = 0;
  private writing = false;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(private readonly o: LaneWriterOptions) {}

  enqueue(items: Parsed[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ items, resolve, reject });
      this.queued += items.length;
      if (this.queued >= this.o.maxBatch || (this.o.lingerMs <= 0 && !this.writing)) this.kick();
      else if (!this.writing) this.timer ??= setTimeout(() => this.kick(), this.o.lingerMs);
    });
  }

  async drain(): Promise<void> {
    while (this.queue.length > 0 || this.writing) {
      this.kick();
      await sleep(2);
    }
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    for (const p of this.queue) p.reject(new Error("ingest pipeline closed"));
    this.queue = [];
    this.queued = 0;
  }

  private kick(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.writing) return;
    this.writing = true;
    void this.loop().finally(() => {
      this.writing = false;
      if (this.queue.length > 0 && !this.closed) this.kick();
    });
  }

  private async loop(): Promise<void> {
    while (this.queue.length > 0 && !this.closed) {
      const taken: Pending[] = [];
      let count = 0;
      while (
        this.queue.length > 0 &&
        (count === 0 || count + (this.queue[0]?.items.length ?? 0) <= this.o.maxBatch)
      ) {
        const next = this.queue.shift() as Pending;
        taken.push(next);
        count += next.items.length;
      }
      this.queued -= count;
      try {
        await this.writeWithRetry(taken.flatMap((p) => p.items));
        for (const p of taken) p.resolve();
      } catch (err) {
        for (const p of taken) p.reject(err);
      }
    }
  }

  /**
   * Writes items, waiting and trying again after any failure that is not their content's. A
   * batch that keeps failing while the database answers is written in halves, each retried the
   * same way: the database may refuse a whole batch for its size (out of memory, a message over
   * 1 GB) and take its parts. Nothing is skipped here.
   */
  private async writeWithRetry(items: Parsed[]): Promise<void> {
    let delay = 100;
    for (let failures = 1; ; failures++) {
      if (this.closed) throw new Error("ingest pipeline closed");
      try {
        await this.writeIsolating(items);
        return;
      } catch (err) {
        this.o.stats.writeFailures++;
        this.o.logger.warn(
          { err, retryInMs: delay, items: items.length },
          "batch not written, retrying",
        );
        await sleep(delay);
        delay = Math.min(delay * 2, 5000);
        if (failures >= SPLIT_AFTER_FAILURES && items.length > 1 && (await this.databaseUp())) {
          const half = Math.ceil(items.length / 2);
          await this.writeWithRetry(items.slice(0, half));
          await this.writeWithRetry(items.slice(half));
          return;
        }
      }
    }
  }

  private databaseUp(): Promise<boolean> {
    return this.o.ping().then(
      () => true,
      () => false,
    );
  }

  /**
   * Writes items; when the database is up and refuses them for their content, finds and skips
   * the culprit. Any other failure goes up to writeWithRetry: skipping a copy is for good.
   */
  private async writeIsolating(items: Parsed[]): Promise<void> {
    try {
      await this.o.write(items, null);
    } catch (err) {
      if (!isRefusedContent(err) || !(await this.databaseUp())) throw err;
      if (items.length === 1) {
        const [item] = items as [Parsed];
        // Once more, on whatever connection the pool gives: a refusal is for good only if the
        // same copy is refused twice.
        const again = await this.o.write(items, null).then(
          () => null,
          (e: unknown) => e,
        );
        if (again === null) return;
        if (!isRefusedContent(again)) throw again;
        this.o.stats.reject("store_rejected");
        this.o.logger.error(
          { err: again, copyId: item.copyId, archiveId: item.archiveId },
          "copy refused by the database, skipped",
        );
        await this.o.write([], item.archiveId);
        return;
      }
      const half = Math.ceil(items.length / 2);
      await this.writeIsolating(items.slice(0, half));
      await this.writeIsolating(items.slice(half));
    }
  }
}
