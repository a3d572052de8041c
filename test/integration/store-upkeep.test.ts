import { sql } from "drizzle-orm";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../src/logger.js";
import { queryRows, type Store } from "../../src/store/db.js";
import { appendBatch, type WriteOptions } from "../../src/store/events.js";
import { INGEST_TABLES, neverAnalyzed, StoreUpkeep } from "../../src/store/upkeep.js";
import { msg, wireCopy } from "../helpers/copies.js";
import { openTestStore, type TestStore } from "../helpers/database.js";
import { pipelineFor } from "../helpers/ingest.js";
import { capturingLogger } from "../helpers/log.js";

const options: WriteOptions = {
  isLocal: (jid) => jid.endsWith("@example.org"),
  callRingTimeoutMs: 60_000,
};

/** Writes one message (two event rows: both sides are local) and tells upkeep. */
async function writeOne(store: Store, upkeep: StoreUpkeep, n: number) {
  const result = await appendBatch(
    store.db,
    { copies: [msg("alice@example.org", "bob@example.org", `m${n}`, `hello ${n}`)] },
    options,
  );
  upkeep.afterWrite(result.written);
  await upkeep.idle();
  return result.written;
}

async function lastVacuums(store: Store) {
  return queryRows<{ relname: string; last_vacuum: unknown }>(
    store.db,
    sql`select relname, last_vacuum from pg_stat_user_tables where schemaname = current_schema()`,
  );
}

describe.each(["postgres", "pglite"] as const)("store upkeep on %s", (driver) => {
  let t: TestStore | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it("waits for its first rows, then leaves no ingest table without statistics", async () => {
    t = await openTestStore(driver);
    const { logger, lines } = capturingLogger();
    const upkeep = new StoreUpkeep({ store: t.store, logger, firstAfterRows: 4 });
    expect(await neverAnalyzed(t.store)).toEqual([...INGEST_TABLES]);

    expect(await writeOne(t.store, upkeep, 1)).toBe(2);
    expect(await neverAnalyzed(t.store)).toEqual([...INGEST_TABLES]);
    expect(lines).toEqual([]);

    await writeOne(t.store, upkeep, 2);
    expect(await neverAnalyzed(t.store)).toEqual([]);
    expect(lines.map((l) => l.msg)).toEqual([
      driver === "pglite"
        ? "embedded store vacuumed and analyzed"
        : "analyzed tables PostgreSQL had no statistics for yet",
    ]);
  });

  it("takes the rows a batch wrote through the ingest pipeline", async () => {
    t = await openTestStore(driver);
    const upkeep = new StoreUpkeep({
      store: t.store,
      logger: createLogger("silent"),
      firstAfterRows: 2,
    });
    const pipeline = pipelineFor(t.store, { upkeep });
    const copy = wireCopy({
      from: "alice@example.org",
      to: "bob@example.org",
      id: "m1",
      body: "hello",
    });
    await pipeline.push([{ copy, archiveId: "1000" }]);
    pipeline.close();
    await upkeep.idle();
    expect(await neverAnalyzed(t.store)).toEqual([]);
  });

  if (driver === "postgres") {
    it("analyzes once: autovacuum keeps the statistics from there", async () => {
      t = await openTestStore(driver);
      const { logger, lines } = capturingLogger();
      const upkeep = new StoreUpkeep({ store: t.store, logger, firstAfterRows: 2 });
      for (let n = 0; n < 4; n++) await writeOne(t.store, upkeep, n);
      expect(lines.map((l) => l.msg)).toEqual([
        "analyzed tables PostgreSQL had no statistics for yet",
      ]);
    });
  } else {
    it("vacuums the embedded store again every so many rows: it has no autovacuum", async () => {
      t = await openTestStore(driver);
      const { logger, lines } = capturingLogger();
      const upkeep = new StoreUpkeep({
        store: t.store,
        logger,
        firstAfterRows: 2,
        vacuumEveryRows: 6,
      });
      // Rows 2 (first), 4, 6 (not yet: due at 8), 8 (second).
      const counts: number[] = [];
      for (let n = 0; n < 4; n++) {
        await writeOne(t.store, upkeep, n);
        counts.push(lines.length);
      }
      expect(counts).toEqual([1, 1, 1, 2]);
      const vacuumed = await lastVacuums(t.store);
      for (const table of INGEST_TABLES) {
        expect(vacuumed.find((r) => r.relname === table)?.last_vacuum).not.toBeNull();
      }
    });
  }
});

describe("store upkeep when the database fails it", () => {
  it("logs the failure and never throws into ingest", async () => {
    const failing = {
      driver: "postgres",
      db: { execute: () => Promise.reject(new Error("connection refused")) },
    } as unknown as Store;
    const { logger, lines } = capturingLogger();
    const upkeep = new StoreUpkeep({ store: failing, logger, firstAfterRows: 1 });
    upkeep.afterWrite(5);
    await upkeep.idle();
    expect(lines.map((l) => [l.msg, l.level])).toEqual([["store upkeep failed", 40]]);
  });
});
