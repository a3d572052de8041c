import { sql } from "drizzle-orm";
import type { Logger } from "../logger.js";
import { queryRows, type Store } from "./db.js";
import { pruneDeliveries } from "./push-deliveries.js";

/** The tables ingest writes on every batch. */
export const INGEST_TABLES = [
  "accounts",
  "conversations",
  "messages",
  "events",
  "calls",
  "checkpoints",
] as const;

export interface UpkeepOptions {
  store: Store;
  logger: Logger;
  /** event rows written before the first upkeep: enough for statistics worth having */
  firstAfterRows?: number;
  /** on PGlite, event rows written between two vacuums */
  vacuumEveryRows?: number;
  /** event rows written between two prunings of push_deliveries */
  pruneEveryRows?: number;
  /** the most push_deliveries rows one pruning deletes */
  pruneLimit?: number;
  /** how long a push_deliveries row is kept at least */
  deliveriesKeptMs?: number;
  clock?: () => Date;
}

/**
 * What a store needs while ingest writes to it and PostgreSQL's autovacuum does not give it in
 * time, or at all:
 *
 * - **A fresh PostgreSQL store** has no statistics, so PostgreSQL plans ingest's statements as if
 *   its tables were empty (hash joins over sequential scans), and each connection keeps those
 *   plans until the tables are first analyzed: by autovacuum, a minute or more later, which is
 *   the whole of a first catch-up. Once ingest has written `firstAfterRows`, the tables PostgreSQL
 *   has never analyzed are analyzed once; autovacuum does the rest.
 * - **Embedded PGlite** runs no autovacuum at all (one standalone backend), so nothing would ever
 *   reclaim the index entries that each conversation update leaves, refresh statistics, or freeze
 *   old rows. There, the ingest tables are vacuumed and analyzed after `firstAfterRows` and then
 *   every `vacuumEveryRows`.
 * - **push_deliveries** gets a row for each call rung on each device, and nothing else deletes
 *   them while the device lives. Every `pruneEveryRows`, the oldest rows of calls that ring no
 *   more are deleted, `pruneLimit` at most; a pass that found that many is followed by another
 *   after the next batch, until the backlog is gone.
 *
 * Upkeep runs beside ingest, one at a time, and never fails it: errors are logged.
 */
export class StoreUpkeep {
  private written = 0;
  private dueAt: number;
  private pruneDueAt: number;
  private running: Promise<void> | null = null;
  private readonly vacuumEveryRows: number;
  private readonly pruneEveryRows: number;

  constructor(private readonly o: UpkeepOptions) {
    this.dueAt = o.firstAfterRows ?? 10_000;
    this.vacuumEveryRows = o.vacuumEveryRows ?? 200_000;
    this.pruneEveryRows = o.pruneEveryRows ?? 10_000;
    this.pruneDueAt = this.pruneEveryRows;
  }

  /** Counts the event rows a committed batch wrote and starts upkeep when it is due. */
  afterWrite(rows: number): void {
    this.written += rows;
    if (this.running) return;
    const analyze = this.written >= this.dueAt;
    const prune = this.written >= this.pruneDueAt;
    if (!analyze && !prune) return;
    if (analyze) {
      this.dueAt =
        this.o.store.driver === "pglite"
          ? this.written + this.vacuumEveryRows
          : Number.POSITIVE_INFINITY;
    }
    if (prune) this.pruneDueAt = this.written + this.pruneEveryRows;
    this.running = (async () => {
      if (analyze) await this.guarded(() => this.analyze());
      if (prune) await this.guarded(() => this.prune());
    })().finally(() => {
      this.running = null;
    });
  }

  /** Resolves once no upkeep is running. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private guarded(task: () => Promise<void>): Promise<void> {
    return task().catch((err: unknown) => this.o.logger.warn({ err }, "store upkeep failed"));
  }

  private async prune(): Promise<void> {
    const now = this.o.clock?.() ?? new Date();
    const limit = this.o.pruneLimit ?? 5000;
    const deleted = await pruneDeliveries(this.o.store.db, {
      claimedBefore: new Date(now.getTime() - (this.o.deliveriesKeptMs ?? 24 * 3_600_000)),
      now,
      limit,
    });
    if (deleted === limit) this.pruneDueAt = this.written;
    if (deleted > 0) {
      this.o.logger.info({ deleted }, "pruned push deliveries of calls that ring no more");
    }
  }

  private async analyze(): Promise<void> {
    const started = performance.now();
    if (this.o.store.driver === "pglite") {
      await this.o.store.db.execute(sql.raw(`vacuum (analyze) ${INGEST_TABLES.join(", ")}`));
      this.o.logger.info(
        { tables: INGEST_TABLES, ms: Math.round(performance.now() - started) },
        "embedded store vacuumed and analyzed",
      );
      return;
    }
    const tables = await neverAnalyzed(this.o.store);
    if (tables.length === 0) return;
    // Names from the fixed list above, never from input.
    await this.o.store.db.execute(sql.raw(`analyze ${tables.join(", ")}`));
    this.o.logger.info(
      { tables, ms: Math.round(performance.now() - started) },
      "analyzed tables PostgreSQL had no statistics for yet",
    );
  }
}

/** The ingest tables PostgreSQL has never analyzed, by hand or by autovacuum. */
export async function neverAnalyzed(store: Store): Promise<string[]> {
  const rows = await queryRows<{ relname: string }>(
    store.db,
    sql`select relname from pg_stat_user_tables
      where schemaname = current_schema() and last_analyze is null and last_autoanalyze is null
        and relname in (${sql.join(
          INGEST_TABLES.map((t) => sql`${t}`),
          sql`, `,
        )})`,
  );
  return INGEST_TABLES.filter((t) => rows.some((r) => r.relname === t));
}
