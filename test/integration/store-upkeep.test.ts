import { eq, sql } from "drizzle-orm";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../src/logger.js";
import { queryRows, type Store } from "../../src/store/db.js";
import { appendBatch, type WriteOptions } from "../../src/store/events.js";
import { pruneDeliveriesQuery } from "../../src/store/push-deliveries.js";
import { accounts } from "../../src/store/schema/accounts.js";
import { pushDeliveries } from "../../src/store/schema/push-deliveries.js";
import { INGEST_TABLES, neverAnalyzed, StoreUpkeep } from "../../src/store/upkeep.js";
import { callSignal, msg, wireCopy } from "../helpers/copies.js";
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

  it("prunes the push deliveries of calls that ring no more, oldest first, so many per pass", async () => {
    t = await openTestStore(driver);
    const { store } = t;
    const { logger, lines } = capturingLogger();
    const now = new Date();
    const ago = (hours: number) => new Date(now.getTime() - hours * 3_600_000);
    const [caller, callee] = ["carol@example.org", "dave@example.org"];
    await appendBatch(
      t.store.db,
      {
        copies: [
          callSignal(caller, callee, { action: "propose", callId: "ended" }, { sentAt: ago(50) }),
          callSignal(caller, callee, { action: "retract", callId: "ended" }, { sentAt: ago(49.9) }),
          // Unanswered: missed a minute after it was offered.
          callSignal(caller, callee, { action: "propose", callId: "expired" }, { sentAt: ago(49) }),
          callSignal(caller, callee, { action: "propose", callId: "ringing" }, { sentAt: now }),
        ],
      },
      options,
    );
    const [account] = await t.store.db
      .select({ id: accounts.id })
      .from(accounts)
      .where(eq(accounts.jid, callee));
    const accountId = account?.id ?? 0;
    const delivered = (deviceId: string, callId: string, deliveredAt: Date) => ({
      deviceId,
      callId,
      accountId,
      deliveredAt,
    });
    await t.store.db.insert(pushDeliveries).values([
      // A call whose row is gone (its account erased while the push was being sent).
      delivered("dev_a", "gone", ago(72)),
      delivered("dev_a", "ended", ago(50)),
      delivered("dev_a", "expired", ago(49)),
      // Claimed long ago by the clock of its row, yet still ringing: kept.
      delivered("dev_a", "ringing", ago(48)),
      // Ended, but claimed within the day: kept.
      delivered("dev_b", "ended", ago(1)),
    ]);
    const upkeep = new StoreUpkeep({
      store: t.store,
      logger,
      firstAfterRows: Number.MAX_SAFE_INTEGER,
      pruneEveryRows: 4,
      pruneLimit: 2,
      clock: () => now,
    });
    const remaining = async () =>
      (
        await store.db
          .select({ deviceId: pushDeliveries.deviceId, callId: pushDeliveries.callId })
          .from(pushDeliveries)
          .orderBy(pushDeliveries.deliveredAt)
      ).map((r) => `${r.deviceId} ${r.callId}`);

    // Writes of 2 rows each: a pass at 4; it deleted its limit, so another after the next batch.
    const deleted: unknown[] = [];
    for (let n = 0; n < 5; n++) {
      await writeOne(t.store, upkeep, n);
      deleted.push(lines.map((l) => l.deleted));
    }
    expect(deleted).toEqual([[], [2], [2, 1], [2, 1], [2, 1]]);
    expect(await remaining()).toEqual(["dev_a ringing", "dev_b ended"]);
  });

  if (driver === "postgres") {
    it("prunes push deliveries through indexes, without reading either table", async () => {
      t = await openTestStore(driver);
      const rows = Array.from({ length: 5000 }, (_, n) => ({
        deviceId: `dev_${n % 50}`,
        callId: `call-${n}`,
        accountId: n % 500,
        deliveredAt: new Date(Date.now() - n * 60_000),
      }));
      for (let i = 0; i < rows.length; i += 1000) {
        await t.store.db.insert(pushDeliveries).values(rows.slice(i, i + 1000));
      }
      await t.store.db.execute(sql`analyze push_deliveries`);
      const now = new Date();
      const plan = (
        await queryRows<{ "QUERY PLAN": string }>(
          t.store.db,
          sql`explain (costs off) ${pruneDeliveriesQuery(t.store.db, {
            claimedBefore: new Date(now.getTime() - 24 * 3_600_000),
            now,
            limit: 100,
          }).getSQL()}`,
        )
      )
        .map((r) => r["QUERY PLAN"])
        .join("\n");
      expect(plan).toContain("push_deliveries_delivered_at");
      expect(plan).toContain("Tid Scan on push_deliveries");
      expect(plan).not.toContain("Seq Scan");
    });

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
