import { randomBytes } from "node:crypto";
import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodePosition } from "../../src/api/position.js";
import type { ParsedCopy } from "../../src/ingest/parse.js";
import { findAccountId } from "../../src/store/admin.js";
import { queryRows } from "../../src/store/db.js";
import { appendBatch, lockAccounts, type WriteOptions } from "../../src/store/events.js";
import { loadStoreMeta } from "../../src/store/meta.js";
import { accounts } from "../../src/store/schema/accounts.js";
import { checkpoints } from "../../src/store/schema/checkpoints.js";
import { events } from "../../src/store/schema/events.js";
import { pushDeliveries } from "../../src/store/schema/push-deliveries.js";
import { pushDevices } from "../../src/store/schema/push-devices.js";
import { expectContract } from "../helpers/contract.js";
import { callSignal, msg } from "../helpers/copies.js";
import { createHarness, type Harness } from "../helpers/harness.js";
import { EMPTY_MIRROR, mirrorRows } from "../helpers/mirror.js";
import { waitFor } from "../helpers/wait.js";

const at = (copy: ParsedCopy) => copy.sentAt.toISOString();

/** Every admin route, with a path that would succeed for an admin. */
const ADMIN_ROUTES: [method: string, path: string][] = [
  ["GET", "/v1/admin/accounts"],
  ["GET", "/v1/admin/accounts/nobody@example.org/conversations"],
  ["GET", "/v1/admin/accounts/nobody@example.org/sync"],
  ["DELETE", "/v1/admin/accounts/nobody@example.org"],
  ["GET", "/v1/admin/calls"],
  ["GET", "/v1/admin/ingest"],
];

describe("admin API", () => {
  let h: Harness;
  let options: WriteOptions;
  let admin: string;
  beforeAll(async () => {
    h = await createHarness();
    options = {
      isLocal: (jid) => jid.endsWith("@example.org"),
      callRingTimeoutMs: h.config.callRingTimeoutMs,
    };
    admin = await h.token("ops@example.org", "admin");
  });
  afterAll(() => h.close());

  /** Fresh accounts per test, sharing a tag that no other test's JIDs contain. */
  function people() {
    const tag = randomBytes(3).toString("hex");
    return {
      tag,
      alice: `alice-${tag}@example.org`,
      bob: `bob-${tag}@example.org`,
      carol: `carol-${tag}@example.org`,
    };
  }
  const write = (...copies: ParsedCopy[]) => appendBatch(h.store.db, { copies }, options);
  /** The copies' clock runs on a fixed day; traffic after an erase is sent after it, now. */
  const sentNow = (copy: ParsedCopy): ParsedCopy => ({ ...copy, sentAt: new Date() });
  type Synced = { position: string; conversations: { peer: string }[] };

  async function call<T = Record<string, unknown>>(
    method: string,
    path: string,
    token: string,
    status: number,
  ): Promise<T> {
    const res = await h.get(path, token, { method });
    expect(res.status, await res.clone().text()).toBe(status);
    return expectContract<T>(res, method, path);
  }

  const problem = (code: string, status: number) => ({
    type: `urn:syncside:problem:${code}`,
    title: expect.any(String),
    status,
    detail: expect.any(String),
    code,
    request_id: expect.any(String),
  });

  describe("security: every admin route", () => {
    it.each(ADMIN_ROUTES)("%s %s answers 401 without a token", async (method, path) => {
      const res = await h.app.request(path, { method });
      expect(res.status).toBe(401);
      expect(await expectContract(res, method, path)).toEqual(problem("unauthorized", 401));
    });

    it.each(ADMIN_ROUTES)("%s %s answers 401 for an unknown token", async (method, path) => {
      expect(await call(method, path, "sst_unknown", 401)).toEqual(problem("unauthorized", 401));
    });

    it.each(ADMIN_ROUTES)("%s %s answers 403 for an account token", async (method, path) => {
      const { alice } = people();
      const token = await h.token(alice);
      expect(await call(method, path, token, 403)).toEqual(problem("forbidden", 403));
    });
  });

  describe("GET /v1/admin/accounts", () => {
    it("lists accounts by JID with conversation count and last activity, filtered and paged", async () => {
      const { tag, alice, bob, carol } = people();
      const m1 = msg(alice, bob, "m1", "hi");
      const m2 = msg(carol, alice, "c1", "yo");
      await write(m1, m2);
      await h.token(`dave-${tag}@example.org`);

      const all = await call<{ accounts: unknown[] }>(
        "GET",
        `/v1/admin/accounts?q=${tag.toUpperCase()}`,
        admin,
        200,
      );
      expect(all).toEqual({
        accounts: [
          {
            jid: alice,
            conversations: 2,
            last_activity_at: at(m2),
            last_seq: 2,
            created_at: expect.any(String),
          },
          {
            jid: bob,
            conversations: 1,
            last_activity_at: at(m1),
            last_seq: 1,
            created_at: expect.any(String),
          },
          {
            jid: carol,
            conversations: 1,
            last_activity_at: at(m2),
            last_seq: 1,
            created_at: expect.any(String),
          },
          {
            jid: `dave-${tag}@example.org`,
            conversations: 0,
            last_activity_at: null,
            last_seq: 0,
            created_at: expect.any(String),
          },
        ],
        next_cursor: null,
      });

      const first = await call<{ accounts: { jid: string }[]; next_cursor: string }>(
        "GET",
        `/v1/admin/accounts?q=${tag}&limit=3`,
        admin,
        200,
      );
      expect(first.accounts.map((a) => a.jid)).toEqual([alice, bob, carol]);
      const second = await call(
        "GET",
        `/v1/admin/accounts?q=${tag}&limit=3&cursor=${first.next_cursor}`,
        admin,
        200,
      );
      expect(second).toEqual({ accounts: [all.accounts.at(-1)], next_cursor: null });
    });

    it("treats % and _ in q as literal characters", async () => {
      const { tag, alice } = people();
      await h.token(alice);
      const q = encodeURIComponent(`${tag.slice(0, 2)}_${tag.slice(3)}`);
      expect(await call("GET", `/v1/admin/accounts?q=${q}`, admin, 200)).toEqual({
        accounts: [],
        next_cursor: null,
      });
      expect(await call("GET", `/v1/admin/accounts?q=%25${tag}`, admin, 200)).toEqual({
        accounts: [],
        next_cursor: null,
      });
    });

    it.each(["limit=0", "limit=501", "limit=x", "cursor=bad", "q="])(
      "answers 400 for %s",
      async (query) => {
        expect(await call("GET", `/v1/admin/accounts?${query}`, admin, 400)).toEqual(
          problem("validation_failed", 400),
        );
      },
    );
  });

  describe("GET /v1/admin/accounts/{jid}/conversations", () => {
    it("answers exactly what the account's own chat list answers, page by page", async () => {
      const { alice, bob, carol } = people();
      await write(msg(alice, bob, "m1", "hi"), msg(carol, alice, "c1", "yo"));
      const own = await h.token(alice);
      for (const query of ["", "?limit=1"]) {
        const theirs = await call("GET", `/v1/conversations${query}`, own, 200);
        const ours = await call(
          "GET",
          `/v1/admin/accounts/${encodeURIComponent(alice)}/conversations${query}`,
          admin,
          200,
        );
        expect(ours).toEqual(theirs);
        expect((ours.conversations as unknown[]).length).toBe(query ? 1 : 2);
      }
      const page1 = await call<{ next_cursor: string }>(
        "GET",
        `/v1/conversations?limit=1`,
        own,
        200,
      );
      expect(
        await call(
          "GET",
          `/v1/admin/accounts/${alice}/conversations?limit=1&cursor=${page1.next_cursor}`,
          admin,
          200,
        ),
      ).toEqual(
        await call("GET", `/v1/conversations?limit=1&cursor=${page1.next_cursor}`, own, 200),
      );
    });

    it("matches the JID case-insensitively", async () => {
      const { alice, bob } = people();
      await write(msg(alice, bob, "m1", "hi"));
      const body = await call(
        "GET",
        `/v1/admin/accounts/${alice.toUpperCase()}/conversations`,
        admin,
        200,
      );
      expect((body.conversations as { peer: string }[]).map((c) => c.peer)).toEqual([bob]);
    });

    it("answers 404 for an unknown account and 400 for a bad JID or query", async () => {
      const { alice } = people();
      expect(await call("GET", `/v1/admin/accounts/${alice}/conversations`, admin, 404)).toEqual(
        problem("not_found", 404),
      );
      await h.token(alice);
      for (const path of [
        "/v1/admin/accounts/alice/conversations",
        "/v1/admin/accounts/a%2Fb@example.org/conversations",
        `/v1/admin/accounts/${alice}/conversations?limit=0`,
        `/v1/admin/accounts/${alice}/conversations?cursor=bad`,
      ]) {
        expect(await call("GET", path, admin, 400)).toEqual(problem("validation_failed", 400));
      }
    });
  });

  describe("GET /v1/admin/accounts/{jid}/sync", () => {
    it("answers exactly what /v1/sync answers the account's phone, with interchangeable positions", async () => {
      const { alice, bob, carol } = people();
      await write(msg(alice, bob, "m1", "hi"), msg(carol, alice, "c1", "yo"));
      const own = await h.token(alice);
      const base = `/v1/admin/accounts/${alice}/sync`;

      const theirs = await call<{ position: string }>("GET", "/v1/sync?limit=1", own, 200);
      const ours = await call<{ position: string }>("GET", `${base}?limit=1`, admin, 200);
      expect(ours).toEqual(theirs);

      await write(msg(bob, alice, "m2", "again"));
      const since = `since=${ours.position}&messages=1`;
      const next = await call("GET", `${base}?${since}`, admin, 200);
      expect(next).toEqual(await call("GET", `/v1/sync?${since}`, own, 200));
      expect(next).toMatchObject({ has_more: false, conversations: [{ peer: bob }] });
    });

    it("answers 404, 400 and 410 as /v1/sync would", async () => {
      const { alice, bob } = people();
      await write(msg(alice, bob, "m1", "hi"));
      const base = `/v1/admin/accounts/${alice}/sync`;
      expect(await call("GET", `/v1/admin/accounts/${bob}x/sync`, admin, 404)).toEqual(
        problem("not_found", 404),
      );
      expect(await call("GET", `${base}?since=garbled`, admin, 400)).toEqual(
        problem("invalid_position", 400),
      );
      for (const query of ["limit=0", "messages=201"]) {
        expect(await call("GET", `${base}?${query}`, admin, 400)).toEqual(
          problem("validation_failed", 400),
        );
      }
      const meta = await loadStoreMeta(h.store);
      const account = (await findAccountId(h.store.db, alice)) ?? 0;
      const beyond = encodePosition(meta.epoch, meta.positionKey, {
        account,
        seq: 1_000_000,
        base: 0,
      });
      expect(await call("GET", `${base}?since=${beyond}`, admin, 410)).toEqual(
        problem("position_expired", 410),
      );
    });
  });

  describe("GET /v1/admin/calls", () => {
    it("lists every account's calls in flight, both sides, paged", async () => {
      const { alice, bob, carol } = people();
      const now = Date.now();
      await write(
        callSignal(
          bob,
          alice,
          { action: "propose", callId: "ring", media: ["audio"] },
          {
            sentAt: new Date(now - 1000),
          },
        ),
        callSignal(
          carol,
          alice,
          { action: "propose", callId: "old", media: ["video"] },
          {
            sentAt: new Date(now - 5 * 60_000),
          },
        ),
        callSignal(
          carol,
          bob,
          { action: "propose", callId: "done", media: ["audio"] },
          {
            sentAt: new Date(now - 2000),
          },
        ),
        callSignal(
          carol,
          bob,
          { action: "retract", callId: "done" },
          {
            sentAt: new Date(now - 1500),
          },
        ),
      );
      const ids = new Map(
        (
          await h.store.db
            .select({ id: accounts.id, jid: accounts.jid })
            .from(accounts)
            .where(sql`${accounts.jid} in (${alice}, ${bob})`)
        ).map((r) => [r.jid, r.id]),
      );
      const side = (account: string, peer: string, direction: "in" | "out") => ({
        account,
        id: "ring",
        peer,
        direction,
        media: ["audio"],
        state: "proposed",
        proposed_at: new Date(now - 1000).toISOString(),
        expires_at: new Date(now - 1000 + h.config.callRingTimeoutMs).toISOString(),
        answered_by: null,
        answered_at: null,
        ended_at: null,
        end_reason: null,
      });
      const expected = [side(alice, bob, "in"), side(bob, alice, "out")].sort(
        (a, b) => (ids.get(a.account) ?? 0) - (ids.get(b.account) ?? 0),
      );

      const all = await call<{ calls: { account: string }[] }>(
        "GET",
        "/v1/admin/calls?limit=500",
        admin,
        200,
      );
      const mine = all.calls.filter((c) => [alice, bob, carol].includes(c.account));
      expect(mine).toEqual(expected);

      // Page one call at a time from just before ours: each comes once, in order.
      const seen: unknown[] = [];
      let cursor: string | null = null;
      do {
        const page: { calls: { account: string }[]; next_cursor: string | null } = await call(
          "GET",
          `/v1/admin/calls?limit=1${cursor ? `&cursor=${cursor}` : ""}`,
          admin,
          200,
        );
        expect(page.calls.length).toBeLessThanOrEqual(1);
        seen.push(...page.calls.filter((c) => [alice, bob, carol].includes(c.account)));
        cursor = page.next_cursor;
      } while (cursor);
      expect(seen).toEqual(expected);
    });

    it.each(["limit=0", "limit=501", "cursor=bad"])("answers 400 for %s", async (query) => {
      expect(await call("GET", `/v1/admin/calls?${query}`, admin, 400)).toEqual(
        problem("validation_failed", 400),
      );
    });
  });

  describe("GET /v1/admin/ingest", () => {
    it("reports this process's ingest and the durable checkpoint", async () => {
      const fresh = await call("GET", "/v1/admin/ingest", admin, 200);
      expect(fresh).toEqual({
        role: "disabled",
        observer_connected: false,
        catching_up: false,
        checkpoint: null,
        last_batch_at: null,
        lag_ms: null,
        events_per_second: 0,
        events_written: 0,
        duplicates: 0,
        write_failures: 0,
        events_by_kind: {},
        rejected: {},
        ignored: {},
      });

      const stats = h.ingest;
      stats.role = "leader";
      stats.connected = true;
      stats.catchingUp = true;
      stats.recordBatch(
        {
          written: 90,
          duplicates: 2,
          foreign: 0,
          accountIds: [],
          byKind: { message: 80, call: 10 },
          newestWrittenAt: null,
          erased: [],
        },
        5,
      );
      stats.lastLagMs = 41.6;
      stats.writeFailures = 1;
      stats.reject("malformed");
      stats.reject("malformed");
      stats.ignore("groupchat");
      const updatedAt = new Date("2026-11-26T08:00:00.000Z");
      await h.store.db.insert(checkpoints).values({
        source: `observer:${h.config.xmpp.observerJid}`,
        position: "1764144000000000",
        updatedAt,
      });
      try {
        expect(await call("GET", "/v1/admin/ingest", admin, 200)).toEqual({
          role: "leader",
          observer_connected: true,
          catching_up: true,
          checkpoint: { position: "1764144000000000", updated_at: updatedAt.toISOString() },
          last_batch_at: stats.lastBatchAt?.toISOString(),
          lag_ms: 42,
          events_per_second: 1.5,
          events_written: 90,
          duplicates: 2,
          write_failures: 1,
          events_by_kind: { message: 80, call: 10 },
          rejected: { malformed: 2 },
          ignored: { groupchat: 1 },
        });
      } finally {
        stats.role = "disabled";
      }
    });
  });

  describe("DELETE /v1/admin/accounts/{jid}", () => {
    const rowsOf = (id: number) => mirrorRows(h.store.db, id);

    async function accountOf(jid: string) {
      const [row] = await h.store.db.select().from(accounts).where(eq(accounts.jid, jid));
      if (!row) throw new Error(`no account ${jid}`);
      return row;
    }

    it("erases the account's mirror in one go; the peer's side and the seq counter stay", async () => {
      const { alice, bob, carol } = people();
      await write(
        msg(alice, bob, "m1", "hi"),
        msg(carol, alice, "c1", "yo"),
        callSignal(bob, alice, { action: "propose", callId: "call-1", media: ["audio"] }),
      );
      const own = await h.token(alice);
      const { id: aliceId } = await accountOf(alice);
      await h.store.db.insert(pushDevices).values({
        id: `dev_${randomBytes(4).toString("hex")}`,
        accountId: aliceId,
        platform: "fcm",
        token: "fcm-token",
        appId: "org.example.app",
        environment: "production",
        p256dh: "key",
        auth: "auth",
        node: `node-${randomBytes(4).toString("hex")}`,
        secretHash: "hash",
        registeredAt: new Date(),
      });
      await h.store.db
        .insert(pushDeliveries)
        .values({ deviceId: "dev_x", callId: "call-1", accountId: aliceId });
      expect(await rowsOf(aliceId)).toEqual({
        events: 3,
        conversations: 2,
        messages: 2,
        calls: 1,
        tokens: 1,
        pushDevices: 1,
        pushDeliveries: 1,
      });
      const bobBefore = await call("GET", `/v1/admin/accounts/${bob}/conversations`, admin, 200);

      const res = await h.get(`/v1/admin/accounts/${encodeURIComponent(alice)}`, admin, {
        method: "DELETE",
      });
      expect(res.status).toBe(204);
      await expectContract(res, "DELETE", `/v1/admin/accounts/${alice}`);

      expect(await rowsOf(aliceId)).toEqual(EMPTY_MIRROR);
      expect(await call("GET", "/v1/conversations", own, 401)).toEqual(
        problem("unauthorized", 401),
      );
      expect(await call("GET", `/v1/admin/accounts/${alice}/conversations`, admin, 200)).toEqual({
        conversations: [],
        next_cursor: null,
      });
      expect(await call("GET", `/v1/admin/accounts/${bob}/conversations`, admin, 200)).toEqual(
        bobBefore,
      );

      // Later traffic is mirrored again, numbered after everything the account ever had and the
      // seq the erase took (3 events, then the erase at 4).
      expect(await accountOf(alice)).toMatchObject({ id: aliceId, lastSeq: 4, erasedSeq: 4 });
      await write(sentNow(msg(bob, alice, "m2", "still there?")));
      expect(await accountOf(alice)).toMatchObject({ id: aliceId, lastSeq: 5 });
      const [event] = await h.store.db.select().from(events).where(eq(events.accountId, aliceId));
      expect(event).toMatchObject({ seq: 5, messageId: "m2" });

      // Erasing again is harmless.
      await call("DELETE", `/v1/admin/accounts/${alice}`, admin, 204);
      expect((await rowsOf(aliceId)).events).toBe(0);
    });

    it("expires the positions issued before, and stores nothing sent before it again", async () => {
      const { alice, bob } = people();
      const before = msg(bob, alice, "m1", "hi");
      await write(before);
      const synced = await call<Synced>("GET", "/v1/sync", await h.token(alice), 200);
      await call("DELETE", `/v1/admin/accounts/${alice}`, admin, 204);

      // The phone logs in again (its token went with the erase) and syncs from where it was.
      const own = await h.token(alice);
      const path = `/v1/sync?since=${synced.position}`;
      expect(await call("GET", path, own, 410)).toEqual(problem("position_expired", 410));
      // ingest reads the archive's look-back again after a reconnect: the erased stays erased.
      await write(before);
      const fresh = await call<Synced>("GET", "/v1/sync", own, 200);
      expect(fresh.conversations).toEqual([]);
      await write(sentNow(msg(bob, alice, "m2", "after the erase")));
      const next = await call<Synced>("GET", `/v1/sync?since=${fresh.position}`, own, 200);
      expect(next.conversations.map((c) => c.peer)).toEqual([bob]);
      expect((await rowsOf((await accountOf(alice)).id)).events).toBe(1);
    });

    it("answers the erased account's held long-poll at once: its position expired", async () => {
      const { alice, bob } = people();
      await write(msg(bob, alice, "m1", "hi"));
      const own = await h.token(alice);
      const { position } = await call<{ position: string }>("GET", "/v1/sync", own, 200);
      const started = Date.now();
      const poll = h.get(`/v1/sync?since=${encodeURIComponent(position)}&wait=30`, own);
      // Parked by now (it subscribes in a few ms); if not, it reads after the erase anyway.
      await new Promise((resolve) => setTimeout(resolve, 500));
      await call("DELETE", `/v1/admin/accounts/${alice}`, admin, 204);
      const res = await poll;
      expect(res.status).toBe(410);
      expect((await res.json()) as { code: string }).toMatchObject({ code: "position_expired" });
      expect(Date.now() - started).toBeLessThan(10_000);
    });

    it("waits for an ingest batch that holds the account, then erases what it wrote", async () => {
      const { alice, bob } = people();
      await write(msg(bob, alice, "m1", "hi"));
      const { id: aliceId } = await accountOf(alice);

      let commit: () => void = () => {};
      const held = new Promise<void>((resolve) => {
        commit = resolve;
      });
      let locked: () => void = () => {};
      const isLocked = new Promise<void>((resolve) => {
        locked = resolve;
      });
      const batch = h.store.db.transaction(async (tx) => {
        await lockAccounts(tx, [alice, bob]);
        locked();
        await held;
        // The same write path ingest takes, as a savepoint inside the transaction holding the lock.
        await appendBatch(tx as never, { copies: [msg(bob, alice, "m2", "racing")] }, options);
      });
      await isLocked;
      const erase = h.get(`/v1/admin/accounts/${alice}`, admin, { method: "DELETE" });
      // The erase is parked on the account's row lock, not done without it.
      await waitFor(
        async () => {
          const [row] = await queryRows<{ n: string | number }>(
            h.store.db,
            sql`select count(*) as n from pg_stat_activity
                where datname = current_database() and wait_event_type = 'Lock'`,
          );
          return Number(row?.n) > 0;
        },
        { what: "the erase waiting on the account lock" },
      );
      commit();
      await batch;
      const res = await erase;
      expect(res.status).toBe(204);
      expect(await rowsOf(aliceId)).toMatchObject({ events: 0, conversations: 0, messages: 0 });
      // Two events, the second from the batch it waited for, then the erase's own seq.
      expect(await accountOf(alice)).toMatchObject({ lastSeq: 3, erasedSeq: 3 });
    });

    it("answers 403 to an account token, even for its own account, and erases nothing", async () => {
      const { alice, bob } = people();
      await write(msg(alice, bob, "m1", "hi"));
      const own = await h.token(alice);
      expect(await call("DELETE", `/v1/admin/accounts/${alice}`, own, 403)).toEqual(
        problem("forbidden", 403),
      );
      const { id } = await accountOf(alice);
      expect(await rowsOf(id)).toMatchObject({ events: 1, conversations: 1, tokens: 1 });
    });

    it("answers 404 for an unknown account and 400 for a bad JID", async () => {
      const { alice } = people();
      expect(await call("DELETE", `/v1/admin/accounts/${alice}`, admin, 404)).toEqual(
        problem("not_found", 404),
      );
      expect(await call("DELETE", "/v1/admin/accounts/alice", admin, 400)).toEqual(
        problem("validation_failed", 400),
      );
    });
  });
});
