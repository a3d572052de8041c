import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashToken } from "../../src/api/auth.js";
import type { ParsedCopy } from "../../src/ingest/parse.js";
import { appendBatch, type WriteOptions } from "../../src/store/events.js";
import { conversations } from "../../src/store/schema/conversations.js";
import { tokens } from "../../src/store/schema/tokens.js";
import { appendSettings } from "../../src/store/settings.js";
import { expectContract } from "../helpers/contract.js";
import { displayed, edit, msg, react } from "../helpers/copies.js";
import { createHarness, type Harness } from "../helpers/harness.js";

const at = (copy: ParsedCopy) => copy.sentAt.toISOString();

function sent(copy: ParsedCopy, direction: "in" | "out", version: number) {
  const event = copy.events[0];
  return {
    id: event?.messageId,
    stanza_id: null,
    direction,
    body: event?.body,
    sent_at: at(copy),
    edited_at: null,
    retracted: false,
    reactions: {},
    version,
  };
}

function state(peer: string, version: number, extra: Record<string, unknown> = {}) {
  return {
    peer,
    version,
    unread_count: 0,
    read_until: null,
    peer_read_until: null,
    pinned: false,
    muted_until: null,
    archived: false,
    last_message: null,
    ...extra,
  };
}

describe("/v1/conversations", () => {
  let h: Harness;
  let options: WriteOptions;
  let n = 0;
  beforeAll(async () => {
    h = await createHarness();
    options = {
      isLocal: (jid) => jid.endsWith("@example.org"),
      callRingTimeoutMs: h.config.callRingTimeoutMs,
    };
  });
  afterAll(() => h.close());

  function people() {
    n++;
    return {
      alice: `alice${n}@example.org`,
      bob: `bob${n}@example.org`,
      carol: `carol${n}@example.org`,
      dave: `dave${n}@example.org`,
    };
  }
  const write = (...copies: ParsedCopy[]) => appendBatch(h.store.db, { copies }, options);

  async function call<T = Record<string, unknown>>(
    method: string,
    path: string,
    token: string,
    status: number,
    body?: unknown,
  ): Promise<T> {
    const res = await h.get(path, token, {
      method,
      ...(body === undefined
        ? {}
        : {
            body: typeof body === "string" ? body : JSON.stringify(body),
            headers: { "content-type": "application/json" },
          }),
    });
    expect(res.status, await res.clone().text()).toBe(status);
    return expectContract<T>(res, method, path);
  }

  describe("GET /v1/conversations", () => {
    it("lists the chat list by most recent activity, paged by an opaque cursor", async () => {
      const { alice, bob, carol, dave } = people();
      const b = msg(bob, alice, "b1", "from bob");
      const c = msg(alice, carol, "c1", "to carol");
      const d = msg(dave, alice, "d1", "from dave");
      await write(b, c, d);
      const token = await h.token(alice);
      // A pinned contact without messages sorts last.
      await call("PATCH", "/v1/conversations/erin@example.org", token, 200, { pinned: true });

      const page1 = await call<{ conversations: unknown[]; next_cursor: string }>(
        "GET",
        "/v1/conversations?limit=2",
        token,
        200,
      );
      expect(page1).toEqual({
        conversations: [
          state(dave, 3, { unread_count: 1, last_message: sent(d, "in", 3) }),
          state(carol, 2, { last_message: sent(c, "out", 2) }),
        ],
        next_cursor: expect.any(String),
      });
      const page2 = await call(
        "GET",
        `/v1/conversations?limit=2&cursor=${page1.next_cursor}`,
        token,
        200,
      );
      expect(page2).toEqual({
        conversations: [
          state(bob, 1, { unread_count: 1, last_message: sent(b, "in", 1) }),
          state("erin@example.org", 4, { pinned: true }),
        ],
        next_cursor: null,
      });
    });

    it.each(["limit=0", "limit=201", "limit=x", "cursor=garbage", "cursor=WyJub3QgYSBkYXRlIiwxXQ"])(
      "answers 400 for %s",
      async (query) => {
        const { alice } = people();
        const token = await h.token(alice);
        expect(await call("GET", `/v1/conversations?${query}`, token, 400)).toMatchObject({
          code: "validation_failed",
        });
      },
    );

    it("says what a bad query parameter should be", async () => {
      const { alice } = people();
      const token = await h.token(alice);
      expect(await call("GET", "/v1/conversations?limit=x", token, 400)).toMatchObject({
        detail: "limit: expected a number",
      });
    });

    it("answers 401 without a valid token", async () => {
      const res = await h.app.request("/v1/conversations");
      expect(res.status).toBe(401);
      await expectContract(res, "GET", "/v1/conversations");
      await call("GET", "/v1/conversations", "sst_unknown", 401);
    });
  });

  describe("GET /v1/conversations/{peer}", () => {
    it("returns one conversation with its state and newest message", async () => {
      const { alice, bob } = people();
      const m = msg(bob, alice, "m1", "hi");
      await write(m, react(alice, bob, "m1", ["❤️"]), displayed(bob, alice, "m0"));
      const token = await h.token(alice);
      expect(await call("GET", `/v1/conversations/${encodeURIComponent(bob)}`, token, 200)).toEqual(
        state(bob, 3, {
          unread_count: 1,
          peer_read_until: "m0",
          last_message: { ...sent(m, "in", 2), reactions: { [alice]: ["❤️"] } },
        }),
      );
    });

    it("finds a peer however it is spelt, as ejabberd compares JIDs", async () => {
      const { alice, bob } = people();
      await write(msg(bob, alice, "m1", "hi"));
      const token = await h.token(alice);
      const [local, domain] = bob.split("@") as [string, string];
      const spelt = `${local[0]}\u00AD${local.slice(1).toUpperCase()}\u200B@${domain}`;
      expect(
        await call("GET", `/v1/conversations/${encodeURIComponent(spelt)}`, token, 200),
      ).toMatchObject({ peer: bob, unread_count: 1 });
      // Nothing is left of this one: not a JID, and no conversation is made for it.
      const nothing = encodeURIComponent(`\u00AD\u200B@${domain}`);
      expect(
        await call("PATCH", `/v1/conversations/${nothing}`, token, 400, { pinned: true }),
      ).toMatchObject({ code: "validation_failed" });
    });

    it("answers 404 for a peer without a conversation, and never shows another account's", async () => {
      const { alice, bob, carol } = people();
      await write(msg(alice, carol, "secret", "alice and carol only"));
      const token = await h.token(bob);
      expect(await call("GET", `/v1/conversations/${carol}`, token, 404)).toMatchObject({
        code: "not_found",
      });
      expect(await call("GET", `/v1/conversations/${carol}/messages`, token, 404)).toMatchObject({
        code: "not_found",
      });
      expect(await call("GET", `/v1/conversations/${carol}/events`, token, 404)).toMatchObject({
        code: "not_found",
      });
    });

    it("serves a conversation with a bare domain (a component or the server) as any other", async () => {
      const { alice } = people();
      const gateway = `gateway-${alice.split("@")[0]}.example.org`;
      const m = msg(gateway, alice, "g1", "welcome");
      await write(m);
      const token = await h.token(alice);
      expect(await call("GET", `/v1/conversations/${gateway}`, token, 200)).toEqual(
        state(gateway, 1, { unread_count: 1, last_message: sent(m, "in", 1) }),
      );
    });

    it.each(["bob@", "@example.org", "bob@example.org%2Fphone", "a%20b@example.org", "a@b@c"])(
      "answers 400 for the peer %s, which is not a bare JID",
      async (peer) => {
        const { alice } = people();
        const token = await h.token(alice);
        expect(await call("GET", `/v1/conversations/${peer}`, token, 400)).toMatchObject({
          code: "validation_failed",
        });
      },
    );

    it("answers 401 without a valid token", async () => {
      await call("GET", "/v1/conversations/bob@example.org", "sst_unknown", 401);
    });
  });

  describe("GET /v1/conversations/{peer}/messages", () => {
    it("pages the compacted delta after a version by version ascending", async () => {
      const { alice, bob } = people();
      const m1 = msg(bob, alice, "m1", "one");
      const m2 = msg(bob, alice, "m2", "two");
      const m3 = msg(alice, bob, "m3", "three");
      await write(m1, m2, m3);
      const e = edit(bob, alice, "m1", "one, edited");
      await write(e);
      const token = await h.token(alice);
      const base = `/v1/conversations/${bob}/messages`;

      const page1 = await call<{ next_cursor: string }>(
        "GET",
        `${base}?changed_since=1&limit=2`,
        token,
        200,
      );
      expect(page1).toEqual({
        messages: [sent(m2, "in", 2), sent(m3, "out", 3)],
        next_cursor: expect.any(String),
      });
      expect(await call("GET", `${base}?cursor=${page1.next_cursor}&limit=2`, token, 200)).toEqual({
        messages: [{ ...sent(m1, "in", 4), body: "one, edited", edited_at: at(e) }],
        next_cursor: null,
      });
    });

    it("goes back through history newest first, from the end or before a message", async () => {
      const { alice, bob } = people();
      const ms = Array.from({ length: 4 }, (_, i) => msg(bob, alice, `m${i}`, `${i}`));
      await write(...ms);
      const token = await h.token(alice);
      const base = `/v1/conversations/${bob}/messages`;
      const [m0, m1, m2, m3] = ms as [ParsedCopy, ParsedCopy, ParsedCopy, ParsedCopy];

      const latest = await call<{ next_cursor: string }>("GET", `${base}?limit=3`, token, 200);
      expect(latest).toEqual({
        messages: [sent(m3, "in", 4), sent(m2, "in", 3), sent(m1, "in", 2)],
        next_cursor: expect.any(String),
      });
      expect(await call("GET", `${base}?cursor=${latest.next_cursor}`, token, 200)).toEqual({
        messages: [sent(m0, "in", 1)],
        next_cursor: null,
      });
      expect(await call("GET", `${base}?before=m2&limit=5`, token, 200)).toEqual({
        messages: [sent(m1, "in", 2), sent(m0, "in", 1)],
        next_cursor: null,
      });
    });

    it("answers 404 for an unknown before id and 400 for bad parameters", async () => {
      const { alice, bob } = people();
      await write(msg(bob, alice, "m1", "hi"));
      const token = await h.token(alice);
      const base = `/v1/conversations/${bob}/messages`;
      expect(await call("GET", `${base}?before=nope`, token, 404)).toMatchObject({
        code: "not_found",
      });
      for (const query of [
        "changed_since=1&before=m1",
        "changed_since=-1",
        "changed_since=x",
        "limit=0",
        "limit=201",
        "cursor=bad",
      ]) {
        expect(await call("GET", `${base}?${query}`, token, 400)).toMatchObject({
          code: "validation_failed",
        });
      }
      await call("GET", base, "sst_unknown", 401);
    });
  });

  describe("GET /v1/conversations/{peer}/events", () => {
    it("returns every step as it happened, paged by seq", async () => {
      const { alice, bob } = people();
      const m = msg(bob, alice, "m1", "hi");
      const e = edit(bob, alice, "m1", "hi!");
      const d = displayed(alice, bob, "m1");
      await write(m, e, d);
      const token = await h.token(alice);
      const base = `/v1/conversations/${bob}/events`;

      const page1 = await call("GET", `${base}?limit=2`, token, 200);
      expect(page1).toEqual({
        events: [
          {
            seq: 1,
            kind: "message",
            direction: "in",
            id: "m1",
            target_id: null,
            body: "hi",
            payload: { raw: "<message/>", from: bob, from_resource: "phone" },
            sent_at: at(m),
          },
          {
            seq: 2,
            kind: "edit",
            direction: "in",
            id: e.events[0]?.messageId,
            target_id: "m1",
            body: "hi!",
            payload: { raw: "<message/>", from: bob, from_resource: "phone" },
            sent_at: at(e),
          },
        ],
        next_after: 2,
      });
      expect(await call("GET", `${base}?after=2`, token, 200)).toEqual({
        events: [
          {
            seq: 3,
            kind: "displayed",
            direction: "out",
            id: null,
            target_id: "m1",
            body: null,
            payload: {
              raw: "<message/>",
              from: alice,
              from_resource: "phone",
              marker: "displayed",
            },
            sent_at: at(d),
          },
        ],
        next_after: null,
      });
    });

    it("answers 400 for bad parameters and 401 without a token", async () => {
      const { alice, bob } = people();
      await write(msg(bob, alice, "m1", "hi"));
      const token = await h.token(alice);
      for (const query of ["after=-1", "after=x", "limit=0", "limit=501"]) {
        expect(
          await call("GET", `/v1/conversations/${bob}/events?${query}`, token, 400),
        ).toMatchObject({ code: "validation_failed" });
      }
      await call("GET", `/v1/conversations/${bob}/events`, "sst_unknown", 401);
    });
  });

  describe("PATCH /v1/conversations/{peer}", () => {
    it("writes settings as an event that bumps the version for the account's other devices", async () => {
      const { alice, bob } = people();
      const m = msg(bob, alice, "m1", "hi");
      await write(m, msg(bob, alice, "m2", "there"));
      const token = await h.token(alice);
      const before = await call<{ position: string }>("GET", "/v1/sync", token, 200);

      const updated = await call("PATCH", `/v1/conversations/${bob}`, token, 200, {
        pinned: true,
        muted_until: "2026-12-01T10:00:00+01:00",
        read_until: "m2",
      });
      const expected = state(bob, 3, {
        pinned: true,
        muted_until: "2026-12-01T09:00:00.000Z",
        read_until: "m2",
        last_message: expect.objectContaining({ id: "m2" }),
      });
      expect(updated).toEqual(expected);

      const after = await call<{ conversations: unknown[]; unread_total: number }>(
        "GET",
        `/v1/sync?since=${before.position}`,
        token,
        200,
      );
      expect(after.conversations).toEqual([
        { ...expected, messages: [], messages_truncated: false, calls: [] },
      ]);
      expect(after.unread_total).toBe(0);

      const events = await call<{ events: { kind: string; payload: unknown }[] }>(
        "GET",
        `/v1/conversations/${bob}/events?after=2`,
        token,
        200,
      );
      expect(events.events).toEqual([
        expect.objectContaining({
          kind: "settings",
          direction: "out",
          payload: {
            changes: { pinned: true, muted_until: "2026-12-01T09:00:00.000Z", read_until: "m2" },
          },
        }),
      ]);

      expect(
        await call("PATCH", `/v1/conversations/${bob}`, token, 200, {
          muted_until: null,
          archived: true,
        }),
      ).toMatchObject({ version: 4, muted_until: null, archived: true, pinned: true });
    });

    it("writes nothing for a token that went away while the change waited on the account", async () => {
      // As when the account is erased (removed from ejabberd) between the token check and the
      // write: the JID's next owner must not find the change in its mirror.
      const { alice, bob } = people();
      await write(msg(bob, alice, "m1", "hi"));
      const token = await h.token(alice);
      const [row] = await h.store.db
        .select({ id: tokens.id })
        .from(tokens)
        .where(eq(tokens.hash, hashToken(token)));
      if (!row) throw new Error("no token row");
      const change = { accountJid: alice, peer: bob, change: { pinned: true }, now: new Date() };
      expect(await appendSettings(h.store.db, { ...change, tokenId: row.id })).not.toBeNull();
      await h.store.db.delete(tokens).where(eq(tokens.id, row.id));
      expect(await appendSettings(h.store.db, { ...change, tokenId: row.id })).toBeNull();
      const [conv] = await h.store.db
        .select({ version: conversations.version })
        .from(conversations)
        .where(eq(conversations.peerJid, bob));
      expect(conv?.version).toBe(2);
    });

    it("creates the conversation for a contact without one yet", async () => {
      const { alice, bob } = people();
      const token = await h.token(alice);
      expect(
        await call("PATCH", `/v1/conversations/${bob.toUpperCase()}`, token, 200, {
          pinned: true,
        }),
      ).toEqual(state(bob, 1, { pinned: true }));
      expect(await call("GET", `/v1/conversations/${bob}`, token, 200)).toMatchObject({
        pinned: true,
      });
    });

    it("takes a name without a domain for a server: settings for one only where a conversation is", async () => {
      const { alice } = people();
      const token = await h.token(alice);
      const problem = await call<{ detail: string }>("PATCH", "/v1/conversations/bob", token, 400, {
        pinned: true,
      });
      expect(problem.detail).toBe(
        "peer: bob names a server, with which there is no conversation; an account is user@domain (bob@example.org?)",
      );
      expect(
        (await call<{ conversations: unknown[] }>("GET", "/v1/conversations", token, 200))
          .conversations,
      ).toEqual([]);
      // A server that wrote to the account has its conversation, and settings like any other.
      const gateway = `gateway-${alice.split("@")[0]}.example.org`;
      await write(msg(gateway, alice, "g1", "welcome"));
      expect(
        await call("PATCH", `/v1/conversations/${gateway}`, token, 200, { muted_until: null }),
      ).toMatchObject({ peer: gateway, muted_until: null });
    });

    it.each([
      [{}, "give at least one"],
      [{ pinned: true, colour: "red" }, '"colour"'],
      [{ pinned: "yes" }, "pinned"],
      [
        { muted_until: "tomorrow" },
        "muted_until: expected an RFC 3339 time with its offset, like 2026-11-27T08:00:00Z",
      ],
      [{ muted_until: "2030-01-01T00:00:00" }, "muted_until: expected an RFC 3339 time"],
      [{ read_until: "" }, "read_until: must not be empty"],
    ])("answers 400 for %j, naming the problem", async (body, words) => {
      const { alice, bob } = people();
      const token = await h.token(alice);
      const problem = await call<{ code: string; detail: string }>(
        "PATCH",
        `/v1/conversations/${bob}`,
        token,
        400,
        body,
      );
      expect(problem.code).toBe("validation_failed");
      expect(problem.detail).toContain(words);
    });

    it("answers 400 for a body that is not JSON, for itself as peer, and 413 when oversized", async () => {
      const { alice, bob } = people();
      const token = await h.token(alice);
      expect(
        (await call("PATCH", `/v1/conversations/${bob}`, token, 400, "{not json")).status,
      ).toBe(400);
      expect(
        await call("PATCH", `/v1/conversations/${alice}`, token, 400, { pinned: true }),
      ).toMatchObject({ code: "validation_failed" });
      expect(
        await call("PATCH", `/v1/conversations/${bob}`, token, 413, {
          read_until: "x".repeat(70_000),
        }),
      ).toMatchObject({ code: "payload_too_large" });
    });

    it("answers 401 without a valid token and writes nothing", async () => {
      const { alice, bob } = people();
      await call("PATCH", `/v1/conversations/${bob}`, "sst_unknown", 401, { pinned: true });
      const token = await h.token(alice);
      await call("GET", `/v1/conversations/${bob}`, token, 404);
    });
  });
});
