import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDb, type Store } from "../../src/store/db.js";
import { type PrivatePostgres, startPrivatePostgres } from "../helpers/private-postgres.js";
import { waitFor } from "../helpers/wait.js";

describe("the store across a PostgreSQL restart", () => {
  // A server of its own: the machine's PostgreSQL serves the other test files meanwhile.
  let pg: PrivatePostgres;
  let store: Store;
  beforeAll(async () => {
    pg = await startPrivatePostgres();
    store = await openDb({ url: pg.url, dataDir: "memory://" });
  });
  afterAll(async () => {
    await store?.close();
    await pg?.destroy();
  });

  it("fails the transactions in flight, keeps the process alive and works again after", async () => {
    let stop = false;
    let committed = 0;
    let failed = 0;
    // Transactions in flight when the server goes away: postgres.js 3.4.9 then wrote its own
    // ROLLBACK to a dropped socket and crashed the process (porsager/postgres#1208).
    const writers = Array.from({ length: 4 }, async () => {
      while (!stop) {
        try {
          await store.db.transaction(async (tx) => {
            await tx.execute(sql`select pg_sleep(0.002)`);
            await tx.execute(sql`select 1`);
          });
          committed++;
        } catch {
          failed++;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    });
    try {
      await waitFor(() => committed > 20, { what: "transactions before the restart" });
      await pg.restart();
      const before = committed;
      await waitFor(() => committed > before + 20, {
        timeoutMs: 30_000,
        what: "transactions after the restart",
      });
    } finally {
      stop = true;
      await Promise.all(writers);
    }
    expect(failed).toBeGreaterThan(0);
  });
});
