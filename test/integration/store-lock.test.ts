import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openTestStore, TEST_PG_ADMIN_URL, type TestStore } from "../helpers/database.js";
import { waitFor } from "../helpers/wait.js";

const KEY = 0x10c4;

describe("the ingest leader lock on PostgreSQL", () => {
  let t: TestStore;
  beforeAll(async () => {
    t = await openTestStore("postgres");
  });
  afterAll(async () => {
    await t?.close();
  });

  it("is held by one store at a time and passes on when released", async () => {
    const lock = await t.store.tryLock(KEY);
    expect(lock).not.toBeNull();
    expect(await t.store.tryLock(KEY)).toBeNull();
    await lock?.release();
    const next = await t.store.tryLock(KEY);
    expect(next).not.toBeNull();
    await next?.release();
  });

  it("reports the loss when its session dies, and the process lives on to take it again", async () => {
    const lock = await t.store.tryLock(KEY + 1);
    expect(lock).not.toBeNull();
    let lost = false;
    void lock?.lost.then(() => {
      lost = true;
    });
    // What a PostgreSQL restart or an operator's pg_terminate_backend does to the session. It
    // used to take the whole process down from inside postgres.js (porsager/postgres#1208).
    const admin = postgres(TEST_PG_ADMIN_URL, { max: 1, onnotice: () => {} });
    try {
      const [row] = await admin<{ n: number }[]>`
        select count(pg_terminate_backend(l.pid))::int as n
        from pg_locks l
        where l.locktype = 'advisory' and l.objid = ${KEY + 1} and l.granted
          and l.database = (select oid from pg_database where datname = ${t.database?.name ?? ""})`;
      expect(row?.n).toBe(1);
    } finally {
      await admin.end();
    }
    await waitFor(() => lost, { timeoutMs: 5000, what: "the lock's loss" });
    await lock?.release();
    const again = await t.store.tryLock(KEY + 1);
    expect(again).not.toBeNull();
    await again?.release();
  });
});
