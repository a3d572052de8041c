import { CALL_ACTIONS, type ParsedCopy } from "../../src/ingest/parse.js";
import { copyOf, nextTime } from "./copies.js";

/** A small seeded generator, so a failing case can be replayed from its seed. */
export function generator(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return { int, pick: <T>(list: readonly T[]): T => list[int(list.length)] as T };
}

/**
 * The items in the order ingest may write them: about half held back a random distance, as a
 * catch-up writes archived copies behind live ones.
 */
export function delayedAtRandom<T>(items: T[], g: ReturnType<typeof generator>): T[] {
  const keyed = items.map((item, i) => ({ item, key: i + g.int(2) * g.int(40) }));
  return keyed.sort((x, y) => x.key - y.key).map((k) => k.item);
}

/** One copy of a history, to be written for any pair of accounts. */
export type Step = (me: string, peer: string) => ParsedCopy;

/**
 * A random conversation between two local accounts: messages from both sides with few ids, so
 * they are reused and shared by both sides; edits, retractions, reactions, displayed markers
 * and call signals, which mostly name a message sent before them (as clients do) and now and
 * then one not sent yet (a modifier sent before a message with its id never applies to it).
 * Written out of order, modifiers still arrive before their messages.
 */
export function randomConversation(seed: number, length: number): Step[] {
  const g = generator(seed);
  // Few ids, so they are reused and shared by both sides.
  const ids = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8"];
  /** ids of the messages sent so far: what an edit, retraction or reaction mostly names */
  const sent: string[] = [];
  return Array.from({ length }, (): Step => {
    const mine = g.int(2) === 0;
    const sentAt = nextTime();
    const kind = g.pick([
      "message",
      "message",
      "message",
      "edit",
      "retract",
      "reaction",
      "displayed",
      "call",
    ] as const);
    // Now and then a modifier names an id no message was sent with yet: it never applies.
    const id = kind !== "message" && sent.length > 0 && g.int(4) > 0 ? g.pick(sent) : g.pick(ids);
    if (kind === "message" && !sent.includes(id)) sent.push(id);
    const call = {
      action: g.pick(CALL_ACTIONS),
      callId: g.pick(["c1", "c2", "c3"]),
      media: g.pick([["audio"], ["audio", "video"]]),
      reason: null,
      migratedTo: null,
    };
    const resource = g.pick(["phone", "laptop"]);
    const origin = g.int(4) === 0 ? g.pick(ids) : null;
    const body = `text ${g.int(1000)}`;
    const reactions = g.pick([[], ["👍"], ["👍", "🎉"], ["❤️"]]);
    const editId = `e${g.int(1_000_000)}`;
    return (me, peer) => {
      const [from, to] = mine ? [me, peer] : [peer, me];
      const common = { from, to, fromResource: "phone" };
      switch (kind) {
        case "message":
          return copyOf({ kind, ...common, messageId: id, originId: origin, body }, { sentAt });
        case "edit":
          return copyOf({ kind, ...common, messageId: editId, targetId: id, body }, { sentAt });
        case "retract":
          return copyOf({ kind, ...common, messageId: editId, targetId: id }, { sentAt });
        case "reaction":
          return copyOf(
            { kind, ...common, messageId: editId, targetId: id, reactions },
            { sentAt },
          );
        case "displayed":
          return copyOf({ kind, ...common, targetId: id, marker: "displayed" }, { sentAt });
        case "call":
          return copyOf({ kind, ...common, fromResource: resource, call }, { sentAt });
      }
    };
  });
}
