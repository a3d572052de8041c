import { randomBytes } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { changeFeedFor } from "../../src/api/change-feed.js";
import { decodePosition, encodePosition } from "../../src/api/position.js";
import type { ParsedCopy } from "../../src/ingest/parse.js";
import { createLogger } from "../../src/logger.js";
import { appendBatch, type WriteOptions } from "../../src/store/events.js";
import { loadStoreMeta } from "../../src/store/meta.js";
import { expectContract } from "../helpers/contract.js";
import { callSignal, displayed, edit, msg, react, retract } from "../helpers/copies.js";
import { createHarness, type Harness } from "../helpers/harness.js";

interface SyncBody {
  position: string;
  caught_up: boolean;
  has_more: boolean;
  unread_total: number;
  calls: unknown[];
  conversations: {
    peer: string;
    version: number;
    messages: { id: string; body: string | null; version: number }[];
    messages_truncated: boolean;
    last_message: unknown;
    calls: unknown[];
  }[];
}

const at = (copy: ParsedCopy) => copy.sentAt.toISOString();

/** A body every JSON escape applies to: quotes, backslashes, control characters, non-ASCII. */
const TRICKY = 'say "hi" \\ C:\\path\nnext line\ttab \u0001 \u001f ünï 中文 🎉 </body>';

/** A message as the API shows it, straight after it was sent. */
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

// The embedded database is what a newcomer runs on: the one-statement read must hold there too.
describe.each(["postgres", "pglite"] as const)("GET /v1/sync on %s", (driver) => {
  let h: Harness;
  let options: WriteOptions;
  let n = 0;
  beforeAll(async () => {
    h = await createHarness({ driver });
    options = {
      isLocal: (jid) => jid.endsWith("@example.org"),
      callRingTimeoutMs: h.config.callRingTimeoutMs,
    };
  });
  afterAll(() => h.close());

  /** Fresh accounts per test, so tests never see each other's rows. */
  function people() {
    n++;
    return {
      alice: `alice${n}@example.org`,
      bob: `bob${n}@example.org`,
      carol: `carol${n}@example.org`,
    };
  }
  const write = (...copies: ParsedCopy[]) => appendBatch(h.store.db, { copies }, options);

  async function sync(token: string, query = ""): Promise<SyncBody> {
    const path = `/v1/sync${query ? `?${query}` : ""}`;
    const res = await h.get(path, token);
    expect(res.status, await res.clone().text()).toBe(200);
    return expectContract<SyncBody>(res, "GET", path);
  }

  async function positionOf(position: string) {
    const meta = await loadStoreMeta(h.store);
    const decoded = decodePosition(meta.epoch, meta.positionKey, position);
    if (!decoded.ok) throw new Error(`not a position: ${position}`);
    return decoded.position;
  }
  const seqOf = async (position: string) => (await positionOf(position)).seq;

  it("answers a first sync with the most recently active conversations and their newest messages", async () => {
    const { alice, bob, carol } = people();
    const b1 = msg(alice, bob, "b1", "hi bob");
    const b2 = msg(bob, alice, "b2", "hi alice");
    const c1 = msg(carol, alice, "c1", "yo");
    await write(b1, b2, c1, react(alice, carol, "c1", ["👍"]));
    const token = await h.token(alice);

    const body = await sync(token);
    expect(body).toEqual({
      position: expect.any(String),
      caught_up: true,
      has_more: false,
      unread_total: 2,
      calls: [],
      conversations: [
        {
          peer: carol,
          version: 4,
          unread_count: 1,
          read_until: null,
          peer_read_until: null,
          pinned: false,
          muted_until: null,
          archived: false,
          last_message: { ...sent(c1, "in", 4), reactions: { [alice]: ["👍"] } },
          messages: [{ ...sent(c1, "in", 4), reactions: { [alice]: ["👍"] } }],
          messages_truncated: false,
          calls: [],
        },
        {
          peer: bob,
          version: 2,
          unread_count: 1,
          read_until: null,
          peer_read_until: null,
          pinned: false,
          muted_until: null,
          archived: false,
          last_message: sent(b2, "in", 2),
          messages: [sent(b1, "out", 1), sent(b2, "in", 2)],
          messages_truncated: false,
          calls: [],
        },
      ],
    });
    expect(await seqOf(body.position)).toBe(4);
  });

  it("renders each message exactly as the conversation's message list does", async () => {
    const { alice, bob } = people();
    const at = (iso: string) => ({ sentAt: new Date(iso) });
    await write(
      { ...msg(bob, alice, "m1", "first"), ...at("2026-11-26T09:00:00.123Z") },
      { ...msg(alice, bob, "m2", "second"), ...at("2026-11-26T09:00:01.007Z") },
      { ...edit(bob, alice, "m1", "first, edited"), ...at("2026-11-26T09:00:02.450Z") },
      { ...msg(bob, alice, "m3", "gone soon"), ...at("2026-11-26T09:00:03.999Z") },
      { ...retract(bob, alice, "m3"), ...at("2026-11-26T09:00:04.001Z") },
      { ...react(alice, bob, "m1", ["🎉"]), ...at("2026-11-26T09:00:05.000Z") },
      { ...react(bob, alice, "m1", ["👍", "❤️"]), ...at("2026-11-26T09:00:05.500Z") },
      {
        ...msg(alice, bob, 'm4 "quoted" \\ id', TRICKY),
        ...at("2026-11-26T09:00:06.000Z"),
        senderArchiveId: "1795697033842212",
      },
    );
    const token = await h.token(alice);
    const [conversation] = (await sync(token)).conversations;
    const path = `/v1/conversations/${encodeURIComponent(bob)}/messages?changed_since=0`;
    const res = await h.get(path, token);
    const listed = await expectContract<{ messages: { id: string }[] }>(res, "GET", path);
    const byId = (list: { id: string }[]) => [...list].sort((x, y) => x.id.localeCompare(y.id));
    expect(byId(conversation?.messages ?? [])).toEqual(byId(listed.messages));
    expect(byId(conversation?.messages ?? [])).toMatchObject([
      {
        id: "m1",
        body: "first, edited",
        sent_at: "2026-11-26T09:00:00.123Z",
        edited_at: "2026-11-26T09:00:02.450Z",
        reactions: { [alice]: ["🎉"], [bob]: ["👍", "❤️"] },
      },
      { id: "m2", sent_at: "2026-11-26T09:00:01.007Z", edited_at: null, retracted: false },
      { id: "m3", body: null, sent_at: "2026-11-26T09:00:03.999Z", retracted: true },
      { id: 'm4 "quoted" \\ id', body: TRICKY, stanza_id: "1795697033842212" },
    ]);
    expect(conversation?.last_message).toEqual(listed.messages.find((m) => m.id.startsWith("m4")));
  });

  it("renders each conversation exactly as the conversation routes do", async () => {
    const { alice, bob } = people();
    const zoe = `zoë-${n}@example.org`;
    const quoted = 'm "1" \\ ü';
    await write(
      msg(bob, alice, quoted, "hi"),
      msg(alice, bob, "m2", TRICKY),
      displayed(alice, bob, quoted),
      displayed(bob, alice, "m2"),
      msg(zoe, alice, "z1", "unread"),
    );
    const token = await h.token(alice);
    const patch = await h.get(`/v1/conversations/${encodeURIComponent(bob)}`, token, {
      method: "PATCH",
      body: JSON.stringify({
        pinned: true,
        archived: true,
        muted_until: "2026-12-01T10:00:00.5+01:00",
      }),
      headers: { "content-type": "application/json" },
    });
    expect(patch.status).toBe(200);
    const synced = (await sync(token)).conversations;
    expect(synced.map((c) => c.peer).sort()).toEqual([bob, zoe].sort());
    for (const conversation of synced) {
      const path = `/v1/conversations/${encodeURIComponent(conversation.peer)}`;
      const shown = await expectContract(await h.get(path, token), "GET", path);
      const { messages: _m, messages_truncated: _t, calls: _c, ...fields } = conversation;
      expect(fields).toEqual(shown);
    }
    expect(synced.find((c) => c.peer === bob)).toMatchObject({
      read_until: quoted,
      peer_read_until: "m2",
      pinned: true,
      archived: true,
      muted_until: "2026-12-01T09:00:00.500Z",
      unread_count: 0,
    });
    expect(synced.find((c) => c.peer === zoe)).toMatchObject({
      read_until: null,
      peer_read_until: null,
      pinned: false,
      archived: false,
      muted_until: null,
      unread_count: 1,
    });
  });

  it("compresses the answer for a phone that accepts gzip, to the same JSON", async () => {
    const { alice, bob } = people();
    await write(...Array.from({ length: 30 }, (_, i) => msg(bob, alice, `z${i}`, `message ${i}`)));
    const token = await h.token(alice);
    const plain = await sync(token);
    const res = await h.get("/v1/sync", token, { headers: { "accept-encoding": "gzip" } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-encoding")).toBe("gzip");
    const zipped = Buffer.from(await res.arrayBuffer());
    const body = JSON.parse(gunzipSync(zipped).toString("utf8")) as SyncBody;
    expect(zipped.length).toBeLessThan(JSON.stringify(body).length / 2);
    expect({ ...body, position: "" }).toEqual({ ...plain, position: "" });
  });

  it("renders rows stored without a rendering (written before it existed) the same way", async () => {
    const { alice, bob } = people();
    const at = (iso: string) => ({ sentAt: new Date(iso) });
    await write(
      { ...msg(bob, alice, "m1", TRICKY), ...at("2026-11-26T09:00:00.123Z") },
      { ...react(alice, bob, "m1", ["🎉"]), ...at("2026-11-26T09:00:01.000Z") },
      { ...msg(alice, bob, "m2", "plain"), ...at("2026-11-26T09:00:02.000Z") },
      { ...retract(alice, bob, "m2"), ...at("2026-11-26T09:00:03.000Z") },
    );
    const token = await h.token(alice);
    const stored = await sync(token);
    await h.store.db.execute(
      sql`update messages set view = null
        where account_id = (select id from accounts where jid = ${alice})`,
    );
    const rendered = await sync(token);
    expect(rendered.conversations).toEqual(stored.conversations);
    expect(rendered.conversations[0]?.messages).toHaveLength(2);
  });

  it("returns only what changed since, each message once in its current state", async () => {
    const { alice, bob, carol } = people();
    const old = msg(bob, alice, "old", "before");
    await write(old, msg(carol, alice, "c1", "quiet"));
    const token = await h.token(alice);
    const first = await sync(token);

    const m = msg(bob, alice, "m1", "draft");
    await write(m, edit(bob, alice, "m1", "draft 2"), edit(bob, alice, "m1", "draft 3"));
    const x = retract(bob, alice, "m1");
    await write(edit(bob, alice, "m1", "draft 4"), x);
    const d = displayed(alice, bob, "old");
    await write(d);

    const body = await sync(token, `since=${first.position}`);
    expect(body).toEqual({
      position: expect.any(String),
      caught_up: true,
      has_more: false,
      unread_total: 1,
      calls: [],
      conversations: [
        {
          peer: bob,
          version: 8,
          unread_count: 0,
          read_until: "old",
          peer_read_until: null,
          pinned: false,
          muted_until: null,
          archived: false,
          last_message: {
            ...sent(m, "in", 7),
            body: null,
            edited_at: expect.any(String),
            retracted: true,
          },
          messages: [
            { ...sent(m, "in", 7), body: null, edited_at: expect.any(String), retracted: true },
          ],
          messages_truncated: false,
          calls: [],
        },
      ],
    });
    expect(await seqOf(body.position)).toBe(8);

    const again = await sync(token, `since=${body.position}`);
    expect(again).toEqual({ ...body, position: body.position, conversations: [] });
  });

  it("orders a delta by when its messages were sent, not when they were stored", async () => {
    const { alice, bob } = people();
    const token = await h.token(alice);
    const start = await sync(token);
    // m1 is sent first but reaches the store last (archived late, read by a later catch-up).
    const m1 = msg(bob, alice, "m1", "first");
    const m2 = msg(bob, alice, "m2", "second");
    await write(m2);
    await write(m1);
    const body = await sync(token, `since=${start.position}`);
    expect(body.conversations[0]?.messages.map((m) => m.id)).toEqual(["m1", "m2"]);
  });

  it("includes the newest message as last_message even when only a marker changed", async () => {
    const { alice, bob } = people();
    const m = msg(bob, alice, "m1", "read me");
    await write(m);
    const token = await h.token(alice);
    const first = await sync(token);
    await write(displayed(alice, bob, "m1"));
    const body = await sync(token, `since=${first.position}`);
    expect(body.conversations).toEqual([
      expect.objectContaining({
        peer: bob,
        version: 2,
        unread_count: 0,
        last_message: sent(m, "in", 1),
        messages: [],
      }),
    ]);
  });

  it("keeps the newest message as last_message when only an older one changed", async () => {
    const { alice, bob } = people();
    const older = msg(bob, alice, "m1", "typo hree");
    const newer = msg(alice, bob, "m2", "what?");
    await write(older, newer);
    const token = await h.token(alice);
    const first = await sync(token);
    await write(edit(bob, alice, "m1", "typo here"));
    const body = await sync(token, `since=${first.position}`);
    expect(body.conversations).toEqual([
      expect.objectContaining({
        peer: bob,
        last_message: sent(newer, "out", 2),
        messages: [expect.objectContaining({ id: "m1", body: "typo here", version: 3 })],
      }),
    ]);
  });

  it("pages with has_more and never skips or repeats a change while ingest writes between pages", async () => {
    const { alice } = people();
    const peers = Array.from({ length: 5 }, (_, i) => `p${i}-${alice.split("@")[0]}@example.org`);
    const token = await h.token(alice);
    const start = await sync(token);

    // p0..p4 get messages 1..5, then p0 again (6): versions p1=2 … p4=5, p0=6.
    await write(...peers.map((p, i) => msg(p, alice, `m${i}`, `hello ${i}`)));
    await write(msg(peers[0] as string, alice, "m0b", "again"));

    const page1 = await sync(token, `since=${start.position}&limit=2`);
    expect(page1).toMatchObject({ has_more: true, caught_up: false });
    expect(page1.conversations.map((c) => [c.peer, c.version])).toEqual([
      [peers[1], 2],
      [peers[2], 3],
    ]);
    expect(await seqOf(page1.position)).toBe(3);

    // Between pages: p1 (already delivered) changes, p4 (not yet delivered) changes.
    await write(msg(peers[1] as string, alice, "m1b", "moved on"));
    await write(edit(peers[4] as string, alice, "m4", "hello 4, edited"));

    const page2 = await sync(token, `since=${page1.position}&limit=2`);
    expect(page2.conversations.map((c) => [c.peer, c.version])).toEqual([
      [peers[3], 4],
      [peers[0], 6],
    ]);
    // p0 was never delivered: its delta still reaches back to the first page's `since`.
    expect(page2.conversations[1]?.messages.map((m) => m.id)).toEqual(["m0", "m0b"]);
    expect(page2.has_more).toBe(true);

    const page3 = await sync(token, `since=${page2.position}&limit=2`);
    expect(page3).toMatchObject({ has_more: false, caught_up: true });
    expect(page3.conversations.map((c) => [c.peer, c.version])).toEqual([
      [peers[1], 7],
      [peers[4], 8],
    ]);
    expect(page3.conversations[1]?.messages).toEqual([
      expect.objectContaining({ id: "m4", body: "hello 4, edited", version: 8 }),
    ]);
    expect(await seqOf(page3.position)).toBe(8);

    // Applied in order, the pages leave the client with exactly what a fresh full sync shows.
    const applied = new Map<string, Map<string, unknown>>();
    for (const page of [page1, page2, page3]) {
      for (const c of page.conversations) {
        const known = applied.get(c.peer) ?? new Map();
        for (const m of c.messages) known.set(m.id, m);
        applied.set(c.peer, known);
      }
    }
    const fresh = await sync(token, "messages=200");
    expect(fresh.conversations).toHaveLength(5);
    for (const c of fresh.conversations) {
      expect([...(applied.get(c.peer)?.values() ?? [])]).toEqual(c.messages);
    }
    expect((await sync(token, `since=${page3.position}`)).conversations).toEqual([]);
  });

  it("keeps the newest messages and says so when the delta exceeds `messages`", async () => {
    const { alice, bob } = people();
    const token = await h.token(alice);
    const start = await sync(token);
    await write(...Array.from({ length: 5 }, (_, i) => msg(bob, alice, `m${i}`, `${i}`)));
    const body = await sync(token, `since=${start.position}&messages=2`);
    expect(body.conversations[0]?.messages.map((m) => m.id)).toEqual(["m3", "m4"]);
    expect(body.conversations[0]?.messages_truncated).toBe(true);
    const all = await sync(token, `since=${start.position}&messages=5`);
    expect(all.conversations[0]?.messages_truncated).toBe(false);
  });

  it("carries each conversation's changed calls, so the chat can show a missed call", async () => {
    const { alice, bob } = people();
    const token = await h.token(alice);
    const before = msg(bob, alice, "hello", "call you in a sec");
    await write(before);
    const start = await sync(token);
    const offer = new Date();
    await write(
      callSignal(
        bob,
        alice,
        { action: "propose", callId: "missed-1", media: ["video"] },
        { sentAt: offer },
      ),
      callSignal(bob, alice, { action: "retract", callId: "missed-1" }),
    );
    const body = await sync(token, `since=${start.position}`);
    expect(body.calls).toEqual([]);
    expect(body.conversations).toHaveLength(1);
    const [conversation] = body.conversations as unknown as {
      calls: unknown[];
      messages: unknown[];
    }[];
    expect(conversation?.messages).toEqual([]);
    expect(conversation?.calls).toMatchObject([
      {
        id: "missed-1",
        peer: bob,
        direction: "in",
        media: ["video"],
        state: "retracted",
        end_reason: "retracted",
      },
    ]);
    // Synced: the call is not repeated; a first sync shows it beside the messages it shows.
    const again = await sync(token, `since=${body.position}`);
    expect(again.conversations).toEqual([]);
    const first = (await sync(token)).conversations as unknown as { calls: { id: string }[] }[];
    expect(first[0]?.calls.map((c) => c.id)).toEqual(["missed-1"]);
  });

  it("shows a missed call to a phone that synced before the account had any event", async () => {
    const { alice, bob } = people();
    const token = await h.token(alice);
    // The account exists from the login on, with nothing in it: the position's base is 0.
    const start = await sync(token);
    expect(start.conversations).toEqual([]);
    await write(
      callSignal(bob, alice, { action: "propose", callId: "early-1", media: ["audio"] }),
      callSignal(bob, alice, { action: "retract", callId: "early-1" }),
    );
    const body = await sync(token, `since=${start.position}`);
    const [conversation] = body.conversations as unknown as {
      peer: string;
      calls: { id: string; state: string }[];
    }[];
    expect(conversation?.peer).toBe(bob);
    expect(conversation?.calls).toMatchObject([{ id: "early-1", state: "retracted" }]);
  });

  it("shows on a first sync every call of a conversation whose messages are not cut", async () => {
    const { alice, bob } = people();
    const carol = `carol-${alice.split("@")[0]}@example.org`;
    const token = await h.token(alice);
    await write(
      callSignal(bob, alice, { action: "propose", callId: "before-1", media: ["audio"] }),
      callSignal(bob, alice, { action: "retract", callId: "before-1" }),
      msg(bob, alice, "after-call", "sorry, missed you"),
      callSignal(carol, alice, { action: "propose", callId: "only-1", media: ["audio"] }),
      callSignal(carol, alice, { action: "retract", callId: "only-1" }),
    );
    const callsOf = async (query: string) =>
      Object.fromEntries(
        (
          (await sync(token, query)).conversations as unknown as {
            peer: string;
            calls: { id: string }[];
          }[]
        ).map((c) => [c.peer, c.calls.map((k) => k.id)]),
      );
    expect(await callsOf("")).toEqual({ [bob]: ["before-1"], [carol]: ["only-1"] });
    // With bob's messages cut to fewer than he sent, only calls since the oldest shown remain.
    await write(msg(bob, alice, "later", "call me back"));
    expect((await callsOf("messages=1"))[bob]).toEqual([]);
    // Nor more of a conversation's calls than `messages`: the latest.
    await write(
      callSignal(carol, alice, { action: "propose", callId: "only-2", media: ["audio"] }),
      callSignal(carol, alice, { action: "retract", callId: "only-2" }),
    );
    expect((await callsOf("messages=1"))[carol]).toEqual(["only-2"]);
    expect((await callsOf("messages=2"))[carol]).toEqual(["only-1", "only-2"]);
  });

  it("shows on a first sync the calls since the oldest message shown, whatever order they were written in", async () => {
    const { alice, bob } = people();
    const token = await h.token(alice);
    const sent = Array.from({ length: 6 }, (_, i) => msg(bob, alice, `m${i}`, "catching up"));
    // The call came last but was written first (live), the messages after it (a catch-up).
    const propose = callSignal(bob, alice, {
      action: "propose",
      callId: "live-1",
      media: ["audio"],
    });
    const retract = callSignal(bob, alice, { action: "retract", callId: "live-1" });
    await write(propose, retract);
    await write(...sent);
    const [conversation] = (await sync(token, "messages=3")).conversations as unknown as {
      messages: unknown[];
      messages_truncated: boolean;
      calls: { id: string }[];
    }[];
    expect([conversation?.messages.length, conversation?.messages_truncated]).toEqual([3, true]);
    expect(conversation?.calls.map((c) => c.id)).toEqual(["live-1"]);
  });

  it("puts active calls first, whatever the conversation paging", async () => {
    const { alice, bob } = people();
    const token = await h.token(alice);
    const start = await sync(token);
    const sentAt = new Date();
    await write(
      callSignal(bob, alice, { action: "propose", callId: "call-1", media: ["audio"] }, { sentAt }),
    );
    const body = await sync(token, `since=${start.position}&limit=1`);
    expect(body.calls).toEqual([
      {
        id: "call-1",
        peer: bob,
        direction: "in",
        media: ["audio"],
        state: "proposed",
        proposed_at: sentAt.toISOString(),
        expires_at: new Date(sentAt.getTime() + h.config.callRingTimeoutMs).toISOString(),
        answered_by: null,
        answered_at: null,
        ended_at: null,
        end_reason: null,
      },
    ]);
    const later = await sync(token, `since=${body.position}`);
    expect(later.conversations).toEqual([]);
    expect(later.calls).toHaveLength(1);

    // Ringing from a conversation the page leaves for later is listed all the same.
    const carol = `carol-${alice.split("@")[0]}@example.org`;
    const dave = `dave-${alice.split("@")[0]}@example.org`;
    await write(
      msg(dave, alice, "d1", "busy?"),
      callSignal(
        carol,
        alice,
        { action: "propose", callId: "call-2", media: ["video"] },
        { sentAt },
      ),
      msg(dave, alice, "d2", "call you later"),
    );
    const paged = await sync(token, `since=${later.position}&limit=1`);
    expect(paged.has_more).toBe(true);
    expect(paged.conversations.map((c) => c.peer)).toEqual([carol]);
    expect((paged.calls as { id: string }[]).map((c) => c.id)).toEqual(["call-1", "call-2"]);
    const first = await sync(token, "limit=1");
    expect(first.conversations.map((c) => c.peer)).toEqual([dave]);
    expect((first.calls as { id: string }[]).map((c) => c.id)).toEqual(["call-1", "call-2"]);
  });

  describe("long-poll", () => {
    it("answers at once with wait=0 when nothing changed", async () => {
      const { alice } = people();
      const token = await h.token(alice);
      const start = await sync(token);
      const body = await sync(token, `since=${start.position}&wait=0`);
      expect(body).toMatchObject({ conversations: [], caught_up: true });
    });

    it("wakes for a change of its own account, not for another account's", async () => {
      const { alice, bob, carol } = people();
      const token = await h.token(alice);
      const start = await sync(token);
      let settled = false;
      const polling = sync(token, `since=${start.position}&wait=30`).finally(() => {
        settled = true;
      });

      // Watch the same feed: once it has delivered carol's change, alice's poll has seen it too.
      const feed = changeFeedFor(h.store, createLogger("silent"));
      const carolId = (await write(msg(bob, carol, "x", "not for alice"))).accountIds;
      const watchers = await Promise.all(carolId.map((id) => feed.subscribe(id)));
      await write(msg(bob, carol, "y", "still not for alice"));
      const controller = new AbortController();
      expect(await watchers[0]?.wait(10_000, controller.signal)).toBe(true);
      for (const w of watchers) w.close();
      await new Promise((resolve) => setImmediate(resolve));
      expect(settled).toBe(false);

      const m = msg(bob, alice, "m1", "wake up");
      const woken = performance.now();
      await write(m);
      const body = await polling;
      // Woken by the change, not by the end of its 30 s wait.
      expect(performance.now() - woken).toBeLessThan(10_000);
      expect(body.conversations).toEqual([
        expect.objectContaining({ peer: bob, messages: [sent(m, "in", 1)] }),
      ]);
    });

    it("stops waiting when the client goes away", async () => {
      const { alice } = people();
      const token = await h.token(alice);
      const start = await sync(token);
      const controller = new AbortController();
      const path = `/v1/sync?since=${start.position}&wait=30`;
      const polling = h.get(path, token, { signal: controller.signal });
      const left = performance.now();
      controller.abort();
      const res = await polling;
      // Ended by the client leaving, not by the end of its 30 s wait.
      expect(performance.now() - left).toBeLessThan(10_000);
      expect(res.status).toBe(200);
      expect((await expectContract<SyncBody>(res, "GET", path)).conversations).toEqual([]);
    });
  });

  describe("errors", () => {
    it("answers 410 position_expired for a position from another store epoch", async () => {
      const { alice } = people();
      const token = await h.token(alice);
      const foreign = encodePosition("another-epoch", randomBytes(32), {
        account: 1,
        seq: 1,
        base: 1,
      });
      const path = `/v1/sync?since=${foreign}`;
      const res = await h.get(path, token);
      expect(res.status).toBe(410);
      expect(await expectContract(res, "GET", path)).toMatchObject({ code: "position_expired" });
    });

    it("answers 410 for a position beyond the account's last seq (a restored database)", async () => {
      const { alice } = people();
      const token = await h.token(alice);
      const { account } = await positionOf((await sync(token)).position);
      const meta = await loadStoreMeta(h.store);
      const ahead = encodePosition(meta.epoch, meta.positionKey, { account, seq: 99, base: 99 });
      const path = `/v1/sync?since=${ahead}`;
      const res = await h.get(path, token);
      expect(res.status).toBe(410);
      expect(await expectContract(res, "GET", path)).toMatchObject({ code: "position_expired" });
    });

    it("answers 410 for another account's position, even one its own log has reached", async () => {
      const { alice, bob } = people();
      const [aliceToken, bobToken] = [await h.token(alice), await h.token(bob)];
      await write(msg(bob, alice, "m1", "one"), msg(alice, bob, "m2", "two"));
      const alices = (await sync(aliceToken)).position;
      expect((await positionOf(alices)).seq).toBe(
        (await positionOf((await sync(bobToken)).position)).seq,
      );
      const path = `/v1/sync?since=${alices}`;
      const res = await h.get(path, bobToken);
      expect(res.status).toBe(410);
      expect(await expectContract(res, "GET", path)).toMatchObject({ code: "position_expired" });
      expect((await sync(aliceToken, `since=${alices}`)).conversations).toEqual([]);
    });

    it.each([
      ["since=garbage", "invalid_position"],
      [`since=${"A".repeat(60)}`, "invalid_position"],
      ["since=", "validation_failed"],
      ["limit=0", "validation_failed"],
      ["limit=abc", "validation_failed"],
      ["limit=501", "validation_failed"],
      ["limit=1.5", "validation_failed"],
      ["messages=0", "validation_failed"],
      ["messages=201", "validation_failed"],
      ["wait=31", "validation_failed"],
      ["wait=-1", "validation_failed"],
    ])("answers 400 for %s", async (query, code) => {
      const { alice } = people();
      const token = await h.token(alice);
      const path = `/v1/sync?${query}`;
      const res = await h.get(path, token);
      expect(res.status).toBe(400);
      expect(await expectContract(res, "GET", path)).toMatchObject({ code });
    });

    it("answers 401 without a token or with an unknown one", async () => {
      const none = await h.app.request("/v1/sync");
      expect(none.status).toBe(401);
      expect(await expectContract(none, "GET", "/v1/sync")).toMatchObject({ code: "unauthorized" });
      const bad = await h.get("/v1/sync", "sst_not-a-token");
      expect(bad.status).toBe(401);
      expect(await expectContract(bad, "GET", "/v1/sync")).toMatchObject({ code: "unauthorized" });
    });

    it("shows an account only its own conversations", async () => {
      const { alice, bob, carol } = people();
      await write(msg(alice, carol, "secret", "for carol only"));
      const token = await h.token(bob);
      const body = await sync(token);
      expect(body.conversations).toEqual([]);
      expect(body.unread_total).toBe(0);
    });
  });
});
