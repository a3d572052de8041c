import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { appendBatch, type WriteOptions } from "../../src/store/events.js";
import { createHarness, type Harness } from "../helpers/harness.js";
import { delayedAtRandom, generator, randomConversation } from "../helpers/histories.js";

/**
 * The sync's promise, tested as a phone lives it: whatever happens between syncs, and however
 * small the pages (`limit`, `messages`, the message list's `limit`), a phone that applies every
 * answer as upserts ends with exactly what the server holds — nothing skipped, nothing stale.
 */

interface Message {
  id: string;
  direction: "in" | "out";
  version: number;
  [field: string]: unknown;
}
interface SyncedConversation {
  peer: string;
  version: number;
  messages: Message[];
  messages_truncated: boolean;
  last_message: Message | null;
  [field: string]: unknown;
}
interface SyncBody {
  position: string;
  has_more: boolean;
  conversations: SyncedConversation[];
}
interface MessagePage {
  messages: Message[];
  next_cursor: string | null;
}

/** What a phone keeps: per conversation its fields and its messages by (direction, id). */
type Model = Map<string, { fields: Record<string, unknown>; messages: Map<string, Message> }>;

const options: WriteOptions = {
  isLocal: (jid) => jid.endsWith("@example.org"),
  callRingTimeoutMs: 60_000,
};

describe("a phone that syncs now and then ends with what the server holds", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness();
  });
  afterAll(() => h.close());

  const get = <T>(path: string, token: string) => h.read<T>(path, token);

  /** Every message of a conversation changed after `version`, through the list's pages. */
  async function changedSince(token: string, peer: string, version: number, limit: number) {
    const all: Message[] = [];
    let cursor: string | null = null;
    do {
      const path: string = `/v1/conversations/${encodeURIComponent(peer)}/messages?changed_since=${version}&limit=${limit}${cursor ? `&cursor=${cursor}` : ""}`;
      const page: MessagePage = await get<MessagePage>(path, token);
      all.push(...page.messages);
      cursor = page.next_cursor;
    } while (cursor);
    return all;
  }

  /** Syncs until caught up, applying each answer as a phone does; returns the new position. */
  async function syncRound(
    token: string,
    model: Model,
    position: string | null,
    g: ReturnType<typeof generator>,
  ): Promise<string> {
    let since = position;
    for (;;) {
      // A first sync lists the most active conversations only: the phone asks for all of them.
      const limit = since ? 1 + g.int(3) : 500;
      const query = `limit=${limit}&messages=${1 + g.int(4)}${since ? `&since=${since}` : ""}`;
      const body = await get<SyncBody>(`/v1/sync?${query}`, token);
      for (const c of body.conversations) {
        const known = model.get(c.peer);
        const entry = known ?? { fields: {}, messages: new Map<string, Message>() };
        const upsert = (m: Message) => entry.messages.set(`${m.direction} ${m.id}`, m);
        if (c.messages_truncated) {
          // The rest of the delta: everything changed since the version this phone last had.
          const version = typeof known?.fields.version === "number" ? known.fields.version : 0;
          for (const m of await changedSince(token, c.peer, version, 1 + g.int(5))) upsert(m);
        }
        for (const m of c.messages) upsert(m);
        const { messages: _m, messages_truncated: _t, calls: _c, ...fields } = c;
        entry.fields = fields;
        model.set(c.peer, entry);
      }
      since = body.position;
      if (!body.has_more) return since;
    }
  }

  it.each([1, 2, 3, 4, 5])(
    "with random histories, batches and page sizes (seed %i)",
    async (seed) => {
      const g = generator(seed);
      const alice = `alice-converge${seed}@example.org`;
      const peers = [1, 2, 3, 4].map((k) => `peer${k}-${seed}@example.org`);
      // The four conversations' histories, interleaved at random.
      const queues = peers.map((peer, k) =>
        randomConversation(seed * 10 + k, 40).map((step) => step(alice, peer)),
      );
      const sent = [];
      while (queues.some((q) => q.length > 0)) {
        const queue = g.pick(queues.filter((q) => q.length > 0));
        sent.push(queue.shift() as NonNullable<(typeof queue)[number]>);
      }
      // Written out of the order they were sent, as after a reconnect.
      const copies = delayedAtRandom(sent, g);
      const token = await h.token(alice);
      const model: Model = new Map();
      let position: string | null = null;
      for (let i = 0; i < copies.length; ) {
        const size = 1 + g.int(20);
        await appendBatch(h.store.db, { copies: copies.slice(i, i + size) }, options);
        i += size;
        if (g.int(2) === 0) position = await syncRound(token, model, position, g);
      }
      await syncRound(token, model, position, g);

      // The server's whole state, read apart from the sync.
      const truth: Model = new Map();
      for (const peer of peers) {
        const path = `/v1/conversations/${encodeURIComponent(peer)}`;
        const fields = await get<Record<string, unknown>>(path, token);
        const messages = new Map<string, Message>();
        for (const m of await changedSince(token, peer, 0, 200))
          messages.set(`${m.direction} ${m.id}`, m);
        truth.set(peer, { fields, messages });
      }
      expect([...model.keys()].sort()).toEqual([...truth.keys()].sort());
      for (const [peer, expected] of truth) {
        const phone = model.get(peer);
        expect(phone?.fields, peer).toEqual(expected.fields);
        expect(Object.fromEntries(phone?.messages ?? []), peer).toEqual(
          Object.fromEntries(expected.messages),
        );
      }
    },
  );
});
