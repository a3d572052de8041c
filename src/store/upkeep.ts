import { sql } from "drizzle-orm";
import type { Logger } from "../logger.js";
import { queryRows, type Store } from "./db.js";

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
 *
 * Upkeep runs beside ingest, one at a time, and never fails it: errors are logged.
 */
export class StoreUpkeep {
  private written = 0;
  private dueAt: number;
  private running: Promise<void> | null = null;
  private readonly vacuumEveryRows: number;

  constructor(private readonly o: UpkeepOptions) {
    this.dueAt = o.firstAfterRows ?? 10_000;
    this.vacuumEveryRows = o.vacuumEveryRows ?? 200_000;
  }

  /** Counts the event rows a committed batch wrote and starts upkeep when it is due. */
  afterWrite(rows: number): void {
    this.written += rows;
    if (this.running || this.written < this.dueAt) return;
    this.dueAt =
      this.o.store.driver === "pglite"
        ? this.written + this.vacuumEveryRows
        : Number.POSITIVE_INFINITY;
    this.running = this.run()
      .catch((err: unknown) => this.o.logger.warn({ err }, "store upkeep failed"))
      .finally(() => {
        this.running = null;
      });
  }

  /** Resolves once no upkeep is running. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async run(): Promise<void> {
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
