import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IngestStats } from "../../src/ingest/stats.js";
import { readCheckpoint } from "../../src/store/checkpoint.js";
import { queryRows } from "../../src/store/db.js";
import { laneOf } from "../../src/store/events.js";
import { accounts } from "../../src/store/schema/accounts.js";
import { events } from "../../src/store/schema/events.js";
import { wireCopy } from "../helpers/copies.js";
import { holdAccountRow, openTestStore, type TestStore } from "../helpers/database.js";
import { pipelineFor } from "../helpers/ingest.js";
import { waitFor } from "../helpers/wait.js";

const SOURCE = "observer:pipeline-test";

/** Two JIDs whose rows both go to `lane` of 2, so a message between them is that lane's alone. */
function pairIn(lane: number): [string, string] {
  const found: string[] = [];
  for (let i = 0; found.length < 2; i++) {
    const jid = `lane${lane}-user${i}@example.org`;
    if (laneOf(jid, 2) === lane) found.push(jid);
  }
  return found as [string, string];
}

async function eventCount(t: TestStore, jid: string): Promise<number> {
  const rows = await t.store.db
    .select({ n: sql<number>`count(*)::int` })
    .from(events)
    .innerJoin(accounts, eq(accounts.id, events.accountId))
    .where(eq(accounts.jid, jid));
  return rows[0]?.n ?? 0;
}

/**
 * Runs `run` with a trigger on events in place, as a rule of the database's own that a write
 * may break: `when` says when it fires ("before insert on events for each row"), `body` is its
 * PL/pgSQL function's body.
 */
async function withEventsTrigger(
  t: TestStore,
  name: string,
  when: string,
  body: string,
  run: () => Promise<void>,
): Promise<void> {
  await t.store.db.execute(
    sql.raw(`create function ${name}() returns trigger language plpgsql as $$ ${body} $$`),
  );
  await t.store.db.execute(sql.raw(`create trigger ${name} ${when} execute function ${name}()`));
  try {
    await run();
  } finally {
    await t.store.db.execute(sql.raw(`drop trigger ${name} on events`));
    await t.store.db.execute(sql.raw(`drop function ${name}()`));
  }
}

describe("ingest pipeline lanes on postgres", () => {
  let t: TestStore;
  beforeAll(async () => {
    t = await openTestStore("postgres");
  });
  afterAll(async () => {
    await t?.close();
  });

  it("lets a lane run batches ahead while another waits, and keeps the checkpoint at the slower one", async () => {
    const [a0, b0] = pairIn(0);
    const [a1, b1] = pairIn(1);
    const pipeline = pipelineFor(t.store, { checkpointSource: SOURCE, lanes: 2, lingerMs: 1 });
    const copy = (from: string, to: string, id: string) =>
      wireCopy({ from, to, id, body: `message ${id}` });

    await pipeline.push([
      { copy: copy(a0, b0, "first-0"), archiveId: "1000" },
      { copy: copy(a1, b1, "first-1"), archiveId: "1001" },
    ]);
    expect((await readCheckpoint(t.store.db, SOURCE))?.position).toBe("1001");

    // Another writer holds lane 1's account row: that lane's next transaction must wait for it.
    const holder = await holdAccountRow(t.store.db, a1);

    const second = pipeline.push([
      { copy: copy(a0, b0, "second-0"), archiveId: "1002" },
      { copy: copy(a1, b1, "second-1"), archiveId: "1003" },
    ]);
    // Lane 0 commits its share, and goes on to the next batch, without waiting for lane 1 ...
    await waitFor(async () => (await eventCount(t, a0)) === 2, {
      timeoutMs: 10_000,
      what: "lane 0's second message",
    });
    const third = pipeline.push([{ copy: copy(a0, b0, "third-0"), archiveId: "1004" }]);
    await waitFor(async () => (await eventCount(t, a0)) === 3, {
      timeoutMs: 10_000,
      what: "lane 0's third message, in a batch after the one lane 1 is stuck in",
    });
    expect(await eventCount(t, a1)).toBe(1);
    // ... but the checkpoint ingest resumes from stays where lane 1 is durable.
    expect((await readCheckpoint(t.store.db, SOURCE))?.position).toBe("1001");

    await holder.release();
    await Promise.all([second, third]);
    expect(await eventCount(t, a1)).toBe(2);
    expect((await readCheckpoint(t.store.db, SOURCE))?.position).toBe("1004");
    pipeline.close();
  });

  it("retries a batch the database interrupted, and skips nothing", async () => {
    const [a, b] = ["retried-a@example.org", "retried-b@example.org"];
    const stats = new IngestStats();
    const pipeline = pipelineFor(t.store, { stats, lanes: 1, lingerMs: 1 });
    const copy = (id: string) => wireCopy({ from: a, to: b, id, body: `message ${id}` });
    await pipeline.push([{ copy: copy("before"), archiveId: "2000" }]);

    // Another writer holds the sender's account row while the batch waits for it, and the
    // waiting statement is cancelled (57014), as a statement timeout or an operator would.
    const holder = await holdAccountRow(t.store.db, a);
    const pushed = pipeline.push([{ copy: copy("interrupted"), archiveId: "2001" }]);
    const waiting = async () =>
      (
        await queryRows<{ pid: number }>(
          t.store.db,
          sql`select pid from pg_stat_activity where datname = current_database()
            and wait_event_type = 'Lock' and query like '%accounts%'`,
        )
      ).map((r) => r.pid);
    await waitFor(async () => (await waiting()).length > 0, {
      timeoutMs: 10_000,
      what: "the batch waiting for the account row",
    });
    for (const pid of await waiting()) {
      await t.store.db.execute(sql`select pg_cancel_backend(${pid})`);
    }
    await waitFor(() => stats.writeFailures > 0, { timeoutMs: 10_000, what: "the failed write" });

    await holder.release();
    await pushed;
    expect(await eventCount(t, a)).toBe(2);
    expect([...stats.rejects.keys()]).toEqual([]);
    pipeline.close();
  });

  it("skips only the copy the database refuses for its content, and moves past it", async () => {
    const [a, b] = ["refused-a@example.org", "refused-b@example.org"];
    const stats = new IngestStats();
    const source = `${SOURCE}-refused`;
    const pipeline = pipelineFor(t.store, { stats, lanes: 1, checkpointSource: source });
    // A rule of the database's own that this one body breaks (SQLSTATE 23514).
    await withEventsTrigger(
      t,
      "refuse_poison",
      "before insert on events for each row",
      `begin
        if new.body = 'poison' then raise check_violation using message = 'poisoned body'; end if;
        return new;
      end`,
      async () => {
        const copy = (id: string, body: string) => wireCopy({ from: a, to: b, id, body });
        await pipeline.push([
          { copy: copy("good-1", "one"), archiveId: "3000" },
          { copy: copy("bad", "poison"), archiveId: "3001" },
          { copy: copy("good-2", "two"), archiveId: "3002" },
        ]);
      },
    );
    pipeline.close();
    expect(await eventCount(t, a)).toBe(2);
    expect(Object.fromEntries(stats.rejects)).toEqual({ store_rejected: 1 });
    expect((await readCheckpoint(t.store.db, source))?.position).toBe("3002");
  });

  it("writes a batch the database keeps failing as a whole in halves, and skips nothing", async () => {
    const [a, b] = ["halved-a@example.org", "halved-b@example.org"];
    const stats = new IngestStats();
    const pipeline = pipelineFor(t.store, { stats, lanes: 1, lingerMs: 1 });
    // A statement of more than one copy's two rows runs out of memory (53200), as a batch of
    // huge copies would; each copy alone goes in.
    await withEventsTrigger(
      t,
      "refuse_big",
      "after insert on events referencing new table as inserted for each statement",
      `begin
        if (select count(*) from inserted where account_id in
            (select id from accounts where jid like 'halved-%')) > 2 then
          raise exception using errcode = '53200', message = 'out of memory (test)';
        end if;
        return null;
      end`,
      async () => {
        const copy = (id: string) => wireCopy({ from: a, to: b, id, body: `message ${id}` });
        await pipeline.push(
          ["h1", "h2", "h3", "h4"].map((id) => ({ copy: copy(id), archiveId: null })),
        );
      },
    );
    pipeline.close();
    expect(await eventCount(t, a)).toBe(4);
    expect(stats.writeFailures).toBeGreaterThanOrEqual(3);
    expect([...stats.rejects.keys()]).toEqual([]);
  });

  it("counts in its lag the copies waiting for their commit, but not those read again", async () => {
    const [a, b] = ["lagging-a@example.org", "lagging-b@example.org"];
    const stats = new IngestStats();
    const pipeline = pipelineFor(t.store, { stats, lanes: 1, lingerMs: 1 });
    const ago = (ms: number) => new Date(Date.now() - ms).toISOString();
    const copy = (id: string, stamp: string) =>
      wireCopy({ from: a, to: b, id, body: id, stamp, copyId: `copy-${id}` });
    await pipeline.push([{ copy: copy("l1", ago(0)), archiveId: "5000" }]);
    const holder = await holdAccountRow(t.store.db, a);
    // The look-back reads a copy the checkpoint has passed: already stored, no lag.
    const reread = pipeline.push([{ copy: copy("l1", ago(60_000)), archiveId: "4000" }]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(stats.lagMs()).toBeLessThan(30_000);
    // A new copy, 10 s old, waiting: that is lag.
    const fresh = pipeline.push([{ copy: copy("l2", ago(10_000)), archiveId: "6000" }]);
    expect(stats.lagMs()).toBeGreaterThanOrEqual(10_000);
    await holder.release();
    await Promise.all([reread, fresh]);
    expect(await eventCount(t, a)).toBe(2);
    pipeline.close();
  });
});
