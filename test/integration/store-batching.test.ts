import { asc, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { appendBatch, type WriteOptions } from "../../src/store/events.js";
import { accounts } from "../../src/store/schema/accounts.js";
import { calls } from "../../src/store/schema/calls.js";
import { conversations } from "../../src/store/schema/conversations.js";
import { messages } from "../../src/store/schema/messages.js";
import { copyOf, nextTime } from "../helpers/copies.js";
import { openTestStore, type TestStore } from "../helpers/database.js";
import { generator, randomConversation, type Step } from "../helpers/histories.js";

/**
 * How copies are grouped into batches is an accident of timing (live copies, catch-up pages,
 * retries that split a batch), so it must never change what is stored. Random conversations
 * with reused ids, edits, retractions, reactions and markers (some naming an id no message was
 * sent with yet), are written once a copy per batch and once in random batches that replay some copies already
 * written; both must end in the same state.
 */

const options: WriteOptions = {
  isLocal: (jid) => jid.endsWith("@example.org"),
  callRingTimeoutMs: 60_000,
};

describe.each(["postgres", "pglite"] as const)(
  "batching does not change what is stored, on %s",
  (driver) => {
    let t: TestStore;
    let n = 0;
    beforeAll(async () => {
      t = await openTestStore(driver);
    });
    afterAll(() => t?.close());

    /** Everything a phone is shown of one account, with the JIDs of the pair taken out. */
    async function stateOf(jid: string, peer: string) {
      const [account] = await t.store.db.select().from(accounts).where(eq(accounts.jid, jid));
      if (!account) throw new Error(`no account ${jid}`);
      const [conv] = await t.store.db
        .select()
        .from(conversations)
        .where(eq(conversations.accountId, account.id));
      const rows = await t.store.db
        .select()
        .from(messages)
        .where(eq(messages.accountId, account.id))
        .orderBy(asc(messages.direction), asc(messages.messageId));
      const callRows = await t.store.db
        .select()
        .from(calls)
        .where(eq(calls.accountId, account.id))
        .orderBy(asc(calls.callId));
      const anonymous = (reactions: Record<string, string[]>) =>
        Object.fromEntries(
          Object.entries(reactions).map(([who, list]) => [
            who === jid ? "me" : who === peer ? "peer" : who,
            list,
          ]),
        );
      return {
        lastSeq: account.lastSeq,
        conversation: {
          version: conv?.version,
          unreadCount: conv?.unreadCount,
          readAt: conv?.readAt,
          readUntil: conv?.readUntil,
          peerReadUntil: conv?.peerReadUntil,
          lastMessageAt: conv?.lastMessageAt,
        },
        calls: callRows.map(({ accountId: _a, conversationId: _c, peerJid: _p, ...call }) => call),
        messages: rows.map((m) => ({
          direction: m.direction,
          messageId: m.messageId,
          originId: m.originId,
          body: m.body,
          sentAt: m.sentAt,
          editedAt: m.editedAt,
          retractedAt: m.retractedAt,
          reactions: anonymous(m.reactions),
          createdSeq: m.createdSeq,
          seq: m.seq,
          view: m.view?.replaceAll(jid, "me").replaceAll(peer, "peer"),
        })),
      };
    }

    it("an origin-id names only the message that carries it now", async () => {
      n++;
      // x carries origin-id o, then x is sent again without it: the edit names o, which no
      // stored message carries any more.
      const at = [nextTime(), nextTime(), nextTime()];
      const steps: Step[] = [
        (me, peer) =>
          copyOf(
            { kind: "message", from: me, to: peer, messageId: "x", originId: "o", body: "one" },
            { sentAt: at[0] },
          ),
        (me, peer) =>
          copyOf(
            { kind: "message", from: me, to: peer, messageId: "x", body: "two" },
            { sentAt: at[1] },
          ),
        (me, peer) =>
          copyOf(
            { kind: "edit", from: me, to: peer, messageId: "e", targetId: "o", body: "edited" },
            { sentAt: at[2] },
          ),
      ];
      const one = [`alice-o1${n}@example.org`, `bob-o1${n}@example.org`] as const;
      const many = [`alice-o2${n}@example.org`, `bob-o2${n}@example.org`] as const;
      for (const step of steps) await appendBatch(t.store.db, { copies: [step(...one)] }, options);
      await appendBatch(t.store.db, { copies: steps.map((step) => step(...many)) }, options);
      const expected = await stateOf(one[1], one[0]);
      expect(expected.messages).toMatchObject([{ messageId: "x", body: "two", editedAt: null }]);
      expect(await stateOf(many[1], many[0])).toEqual(expected);
    });

    it.each([1, 2, 3, 4, 5, 6])(
      "a copy per batch, or random batches with replays: the same state (seed %i)",
      async (seed) => {
        n++;
        const steps = randomConversation(seed, 120);
        const one = [`alice-one${n}@example.org`, `bob-one${n}@example.org`] as const;
        const many = [`alice-many${n}@example.org`, `bob-many${n}@example.org`] as const;
        for (const step of steps) {
          await appendBatch(t.store.db, { copies: [step(...one)] }, options);
        }
        // Random batches, each led by a few copies already written, as a catch-up's overlap
        // and the settling pass read them again.
        const g = generator(seed * 7919);
        const manyCopies = steps.map((step) => step(...many));
        for (let i = 0; i < manyCopies.length; ) {
          const size = 1 + g.int(40);
          const from = Math.max(0, i - g.int(10));
          await appendBatch(t.store.db, { copies: manyCopies.slice(from, i + size) }, options);
          i += size;
        }
        const expected = await stateOf(one[0], one[1]);
        // Not vacuous: the history left messages in several states, and calls.
        expect(expected.messages.some((m) => m.retractedAt)).toBe(true);
        expect(expected.messages.some((m) => m.editedAt)).toBe(true);
        expect(expected.calls.length).toBeGreaterThan(0);
        expect(await stateOf(many[0], many[1])).toEqual(expected);
        expect(await stateOf(many[1], many[0])).toEqual(await stateOf(one[1], one[0]));
      },
    );
  },
);
