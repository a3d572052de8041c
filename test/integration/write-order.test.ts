import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ParsedCopy } from "../../src/ingest/parse.js";
import { appendBatch, type WriteOptions } from "../../src/store/events.js";
import { copyOf, edit, nextTime, react, retract } from "../helpers/copies.js";
import { createHarness, type Harness } from "../helpers/harness.js";
import { delayedAtRandom, generator } from "../helpers/histories.js";

/**
 * Ingest does not always write copies in the order they were sent: after a reconnect, the
 * catch-up pages of the archive are written behind live copies, and lanes and retries reorder
 * more. What a phone is shown must be what was sent, whatever the order of writing: the unread
 * count, the newest message, and the history, each checked here against a model of the
 * conversation built from the send order alone.
 */

const options: WriteOptions = {
  isLocal: (jid) => jid.endsWith("@example.org"),
  callRingTimeoutMs: 60_000,
};

interface Shown {
  id: string;
  direction: "in" | "out";
}

interface Conversation {
  unread_count: number;
  read_until: string | null;
  last_message: Shown | null;
}

/**
 * A random history of one conversation, seen by `me`, with what it must show in the end. Now and
 * then a message takes the id of an earlier one of its side, as some clients do: the one sent
 * later replaces the other.
 */
function history(seed: number, me: string, peer: string) {
  const g = generator(seed);
  const copies: ParsedCopy[] = [];
  /** the messages stored in the end, by direction and id */
  const stored = new Map<
    string,
    { id: string; direction: "in" | "out"; at: Date; retracted: boolean }
  >();
  /** when `me` last read: its newest own message or displayed marker */
  let readAt = 0;
  let readUntil: string | null = null;
  for (let i = 0; i < 60; i++) {
    const at = nextTime();
    const incoming = [...stored.values()].filter((m) => m.direction === "in" && !m.retracted);
    const kind = g.pick(["in", "in", "in", "out", "displayed", "retract"] as const);
    if (kind === "in" || kind === "out" || incoming.length === 0) {
      const direction = kind === "out" ? "out" : "in";
      // Taken back or not: the message that comes with the id is a new one.
      const sameSide = [...stored.values()].filter((m) => m.direction === direction);
      const id = sameSide.length > 0 && g.int(5) === 0 ? g.pick(sameSide).id : `m${i}`;
      const [from, to] = direction === "in" ? [peer, me] : [me, peer];
      copies.push(
        copyOf({ kind: "message", from, to, messageId: id, body: `${id} ${i}` }, { sentAt: at }),
      );
      stored.set(`${direction} ${id}`, { id, direction, at, retracted: false });
      if (direction === "out") readAt = at.getTime();
    } else if (kind === "displayed") {
      const target = g.pick(incoming);
      copies.push(
        copyOf(
          { kind: "displayed", from: me, to: peer, targetId: target.id, marker: "displayed" },
          { sentAt: at },
        ),
      );
      readAt = at.getTime();
      readUntil = target.id;
    } else {
      const target = g.pick(incoming);
      copies.push(
        copyOf(
          { kind: "retract", from: peer, to: me, messageId: `r${i}`, targetId: target.id },
          { sentAt: at },
        ),
      );
      target.retracted = true;
    }
  }
  const messages = [...stored.values()];
  const unread = messages.filter(
    (m) => m.direction === "in" && !m.retracted && m.at.getTime() > readAt,
  ).length;
  const newestFirst = messages
    .sort((x, y) => y.at.getTime() - x.at.getTime())
    .map(({ id, direction }) => ({ id, direction }));
  return { copies, unread, readUntil, newestFirst };
}

describe("what a phone is shown does not depend on the order ingest wrote it", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness();
  });
  afterAll(() => h.close());

  const get = <T>(path: string, token: string) => h.read<T>(path, token);

  /** The whole history through `?before` pages of two, newest first. */
  async function historyOf(token: string, peer: string): Promise<Shown[]> {
    const base = `/v1/conversations/${encodeURIComponent(peer)}/messages?limit=2`;
    const all: Shown[] = [];
    let path: string | null = base;
    while (path) {
      const page: { messages: Shown[]; next_cursor: string | null } = await get(path, token);
      all.push(...page.messages.map(({ id, direction }) => ({ id, direction })));
      path = page.next_cursor ? `${base}&cursor=${page.next_cursor}` : null;
    }
    return all;
  }

  it.each([1, 2, 3, 4, 5, 6, 7, 8])("seed %i", async (seed) => {
    const me = `me-order${seed}@example.org`;
    const peer = `peer-order${seed}@example.org`;
    const { copies, unread, readUntil, newestFirst } = history(seed, me, peer);
    const delayed = delayedAtRandom(copies, generator(seed * 31));
    // And on even seeds the newest copy (a live one) is written before all of them, so the
    // second sync's delta holds older messages only.
    const newest = copies.at(-1) as ParsedCopy;
    const shuffled = seed % 2 === 0 ? [newest, ...delayed.filter((c) => c !== newest)] : delayed;
    // Not vacuous: ids were used again, and the order really changed.
    const sentMessages = copies.filter((c) => c.events[0]?.kind === "message").length;
    expect(newestFirst.length).toBeLessThan(sentMessages);
    // Not vacuous: the order really changed.
    expect(shuffled.map((c) => c.copyId)).not.toEqual(copies.map((c) => c.copyId));

    const token = await h.token(me);
    // Half written and synced, so the second sync's delta starts in the middle of the history.
    const g = generator(seed * 7);
    const half = shuffled.length >> 1;
    for (let i = 0; i < half; i += 1 + g.int(6)) {
      await appendBatch(h.store.db, { copies: shuffled.slice(i, Math.min(i + 6, half)) }, options);
    }
    // (the batches above overlap: a copy written twice is a replay and changes nothing)
    const first = await get<{ position: string }>("/v1/sync", token);
    for (let i = half; i < shuffled.length; i += 1 + g.int(6)) {
      await appendBatch(h.store.db, { copies: shuffled.slice(i, i + 6) }, options);
    }

    const delta = await get<{ conversations: Conversation[]; unread_total: number }>(
      `/v1/sync?since=${first.position}`,
      token,
    );
    const fresh = await get<{ conversations: Conversation[] }>("/v1/sync", token);
    const listed = await get<Conversation>(`/v1/conversations/${encodeURIComponent(peer)}`, token);
    for (const shown of [delta.conversations[0], fresh.conversations[0], listed]) {
      expect(shown?.unread_count).toBe(unread);
      expect(shown?.read_until).toBe(readUntil);
      expect(shown?.last_message).toMatchObject(newestFirst[0] ?? {});
    }
    expect(delta.unread_total).toBe(unread);
    expect(await historyOf(token, peer)).toEqual(newestFirst);
  });

  it("of messages sent in the same millisecond, the one stored last is the newest", async () => {
    const me = "me-tie@example.org";
    const peer = "peer-tie@example.org";
    const token = await h.token(me);
    const at = nextTime();
    const message = (id: string) =>
      copyOf({ kind: "message", from: peer, to: me, messageId: id, body: id }, { sentAt: at });
    await appendBatch(h.store.db, { copies: [message("a"), message("b")] }, options);
    const first = await get<{ position: string; conversations: Conversation[] }>("/v1/sync", token);
    expect(first.conversations[0]?.last_message).toMatchObject({ id: "b" });
    // Only "a" changes: the delta holds it alone, and the newest is still "b".
    await appendBatch(h.store.db, { copies: [edit(peer, me, "a", "a, edited")] }, options);
    const delta = await get<{ conversations: (Conversation & { messages: Shown[] })[] }>(
      `/v1/sync?since=${first.position}`,
      token,
    );
    expect(delta.conversations[0]?.messages.map((m) => m.id)).toEqual(["a"]);
    expect(delta.conversations[0]?.last_message).toMatchObject({ id: "b" });
  });

  it("a message id used again replaces the message and counts once", async () => {
    const me = "me-reuse@example.org";
    const peer = "peer-reuse@example.org";
    const token = await h.token(me);
    const again = (body: string) =>
      copyOf({ kind: "message", from: peer, to: me, messageId: "x", body });
    const path = `/v1/conversations/${encodeURIComponent(peer)}`;
    // In later batches, and twice in one.
    for (const batch of [["one"], ["two"], ["three", "four"]]) {
      await appendBatch(h.store.db, { copies: batch.map(again) }, options);
      const shown = await get<Conversation & { last_message: { body: string } }>(path, token);
      expect(shown.unread_count, batch.join()).toBe(1);
      expect(shown.last_message.body).toBe(batch.at(-1));
    }
  });

  it("a message id used again starts clean: what named the message it replaces stays with it", async () => {
    const me = "me-reuse-clean@example.org";
    const peer = "peer-reuse-clean@example.org";
    const token = await h.token(me);
    const path = `/v1/conversations/${encodeURIComponent(peer)}/messages?limit=10`;
    type Row = Shown & {
      body: string | null;
      edited_at: string | null;
      retracted: boolean;
      reactions: Record<string, string[]>;
    };
    const shown = async () => (await get<{ messages: Row[] }>(path, token)).messages;
    const again = (id: string, body: string) =>
      copyOf({ kind: "message", from: peer, to: me, messageId: id, body });

    // "x": edited, reacted to and taken back, then its id comes again, each in a later batch.
    for (const copy of [
      again("x", "one"),
      edit(peer, me, "x", "one, edited"),
      react(me, peer, "x", ["👍"]),
      retract(peer, me, "x"),
      again("x", "two"),
    ]) {
      await appendBatch(h.store.db, { copies: [copy] }, options);
    }
    // "y": the same in one batch; "z": the first message's edit is written after the second.
    const y = [again("y", "one"), edit(peer, me, "y", "one, edited"), react(me, peer, "y", ["🎉"])];
    await appendBatch(h.store.db, { copies: [...y, again("y", "two")] }, options);
    const [z1, z1Edit, z2] = [
      again("z", "one"),
      edit(peer, me, "z", "one, edited"),
      again("z", "two"),
    ];
    await appendBatch(h.store.db, { copies: [z1, z2] }, options);
    await appendBatch(h.store.db, { copies: [z1Edit] }, options);

    const messages = await shown();
    expect(messages.map((m) => [m.id, m.body, m.edited_at, m.retracted, m.reactions])).toEqual([
      ["z", "two", null, false, {}],
      ["y", "two", null, false, {}],
      ["x", "two", null, false, {}],
    ]);
    const conversation = await get<Conversation>(
      `/v1/conversations/${encodeURIComponent(peer)}`,
      token,
    );
    expect(conversation.unread_count).toBe(3);
    // An edit sent after the new message still changes it.
    await appendBatch(h.store.db, { copies: [edit(peer, me, "x", "two, edited")] }, options);
    expect((await shown()).find((m) => m.id === "x")?.body).toBe("two, edited");
  });

  it("a read_until request reads up to that message, not up to the request's time", async () => {
    const me = "me-request@example.org";
    const peer = "peer-request@example.org";
    const token = await h.token(me);
    const path = `/v1/conversations/${encodeURIComponent(peer)}`;
    const message = (id: string) =>
      copyOf({ kind: "message", from: peer, to: me, messageId: id, body: id });
    const readUntil = async (id: string) => {
      const res = await h.get(path, token, {
        method: "PATCH",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ read_until: id }),
      });
      expect(res.status).toBe(200);
      const answered = ((await res.json()) as Conversation).unread_count;
      expect((await get<Conversation>(path, token)).unread_count).toBe(answered);
      return answered;
    };
    await appendBatch(h.store.db, { copies: ["a", "b", "c"].map(message) }, options);
    expect(await readUntil("b")).toBe(1);
    // "d" was sent before the request (stamped by ejabberd, on its way to the store) but after
    // the message read: it stays unread.
    const d = message("d");
    expect(await readUntil("c")).toBe(0);
    await appendBatch(h.store.db, { copies: [d] }, options);
    expect((await get<Conversation>(path, token)).unread_count).toBe(1);
    // An id the store does not hold yet: everything stored is read.
    expect(await readUntil("not-stored-yet")).toBe(0);
    // Another device's marker for "f", sent before the request that names the older "e" but
    // written after it: "f" and all before it are read, though read_until stays "e".
    await appendBatch(h.store.db, { copies: ["e", "f"].map(message) }, options);
    const marker = copyOf({ kind: "displayed", from: me, to: peer, targetId: "f" });
    expect(await readUntil("e")).toBe(1);
    await appendBatch(h.store.db, { copies: [marker] }, options);
    const after = await get<Conversation>(path, token);
    expect([after.unread_count, after.read_until]).toEqual([0, "e"]);
  });
});
