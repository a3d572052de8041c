import { xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";

/**
 * What the benchmarks send: one-to-one chat traffic with the mix a messenger sees — mostly text,
 * some receipts, read markers, corrections, reactions, a few retractions and call signals — each
 * stanza shaped the way Conversations/Dino/Monal send it. Deterministic for a given seed.
 */
export const MIX = {
  message: 0.8,
  received: 0.04,
  displayed: 0.06,
  edit: 0.04,
  reaction: 0.03,
  retract: 0.01,
  call: 0.02,
} as const;

export type TrafficKind = keyof typeof MIX;

export interface Original {
  kind: TrafficKind;
  /** full JID of the sender (bare@domain/resource) */
  from: string;
  /** bare JID of the recipient */
  to: string;
  stanza: Element;
}

const WORDS = (
  "ok yes no maybe later tonight tomorrow lunch coffee call me when you can the meeting moved " +
  "to three thanks see you soon train is late running ten minutes behind did you see this " +
  "photo haha great idea let me check love it on my way where are you happy birthday 🎉 " +
  "café déjà vu naïve über 👍 🙂"
).split(" ");
const EMOJIS = ["👍", "❤️", "😂", "😮", "🙏", "🎉"];
const CALL_STEPS = ["propose", "ringing", "proceed", "finish"] as const;

/** mulberry32: small, fast and good enough to make runs repeatable. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Pair {
  a: string;
  b: string;
  /** recent message ids sent by a and by b, newest last */
  sentByA: string[];
  sentByB: string[];
  call: { id: string; step: number; caller: "a" | "b" } | null;
}

export interface TrafficOptions {
  /** conversations as [x, y] bare JIDs; either side may write unless `oneWay` */
  pairs: [string, string][];
  /** only the first JID of each pair sends (its sessions are the only ones logged in) */
  oneWay?: boolean;
  seed?: number;
}

/** An endless, deterministic stream of original stanzas over the given conversations. */
export class Traffic {
  private readonly pairs: Pair[];
  private readonly rand: () => number;
  private readonly oneWay: boolean;
  private counter = 0;

  constructor(o: TrafficOptions) {
    this.pairs = o.pairs.map(([a, b]) => ({ a, b, sentByA: [], sentByB: [], call: null }));
    this.rand = random(o.seed ?? 1);
    this.oneWay = o.oneWay ?? false;
  }

  /** Pairs are picked with a skew (a few chatty conversations, a long tail), as in real use. */
  private pickPair(): Pair {
    const r = this.rand();
    const index = Math.floor(r * r * this.pairs.length);
    return this.pairs[index] as Pair;
  }

  private pickKind(): TrafficKind {
    let r = this.rand();
    for (const [kind, share] of Object.entries(MIX) as [TrafficKind, number][]) {
      if (r < share) return kind;
      r -= share;
    }
    return "message";
  }

  next(): Original {
    const pair = this.pickPair();
    const fromA = this.oneWay || this.rand() < 0.5;
    const kind = this.pickKind();
    const id = `m${(++this.counter).toString(36)}-${Math.floor(this.rand() * 1e9).toString(36)}`;
    if (kind === "call") return this.callSignal(pair, id);
    const from = fromA ? pair.a : pair.b;
    const to = fromA ? pair.b : pair.a;
    const own = fromA ? pair.sentByA : pair.sentByB;
    // One-way traffic has no peer messages: markers and reactions then point at our own.
    const theirs = this.oneWay ? pair.sentByA : fromA ? pair.sentByB : pair.sentByA;
    const chat = (...children: Element[]) => xml("message", { to, id, type: "chat" }, ...children);
    const recent = (ids: string[]) => ids[Math.floor(this.rand() * ids.length)];

    const target = kind === "edit" || kind === "retract" ? recent(own) : recent(theirs);
    if (kind === "message" || target === undefined) {
      own.push(id);
      if (own.length > 20) own.shift();
      return {
        kind: "message",
        from: `${from}/phone`,
        to,
        stanza: chat(
          xml("body", {}, this.text()),
          xml("origin-id", { xmlns: "urn:xmpp:sid:0", id }),
          xml("markable", { xmlns: "urn:xmpp:chat-markers:0" }),
          xml("request", { xmlns: "urn:xmpp:receipts" }),
          xml("active", { xmlns: "http://jabber.org/protocol/chatstates" }),
        ),
      };
    }
    const stanza = (() => {
      switch (kind) {
        case "received":
          return chat(
            xml("received", { xmlns: "urn:xmpp:receipts", id: target }),
            xml("received", { xmlns: "urn:xmpp:chat-markers:0", id: target }),
          );
        case "displayed":
          return chat(xml("displayed", { xmlns: "urn:xmpp:chat-markers:0", id: target }));
        case "edit":
          return chat(
            xml("body", {}, this.text()),
            xml("replace", { xmlns: "urn:xmpp:message-correct:0", id: target }),
            xml("origin-id", { xmlns: "urn:xmpp:sid:0", id }),
          );
        case "reaction":
          return chat(
            xml(
              "reactions",
              { xmlns: "urn:xmpp:reactions:0", id: target },
              xml("reaction", {}, EMOJIS[Math.floor(this.rand() * EMOJIS.length)] ?? "👍"),
            ),
            xml("store", { xmlns: "urn:xmpp:hints" }),
          );
        default:
          return chat(
            xml("retract", { xmlns: "urn:xmpp:message-retract:1", id: target }),
            xml("fallback", { xmlns: "urn:xmpp:fallback:0", for: "urn:xmpp:message-retract:1" }),
            xml("body", {}, "This person attempted to retract a previous message"),
            xml("store", { xmlns: "urn:xmpp:hints" }),
          );
      }
    })();
    return { kind, from: `${from}/phone`, to, stanza };
  }

  /** A call walks propose → ringing → proceed → finish, one signal per draw of its conversation. */
  private callSignal(pair: Pair, id: string): Original {
    const call = pair.call ?? { id: `call-${id}`, step: 0, caller: "a" as const };
    pair.call = call.step + 1 < CALL_STEPS.length ? { ...call, step: call.step + 1 } : null;
    const action = CALL_STEPS[call.step] ?? "finish";
    const callerSends = action === "propose" || action === "finish" || this.oneWay;
    const [from, to] = callerSends ? [pair.a, pair.b] : [pair.b, pair.a];
    const ns = "urn:xmpp:jingle-message:0";
    const signal =
      action === "propose"
        ? xml(
            "propose",
            { xmlns: ns, id: call.id },
            xml("description", { xmlns: "urn:xmpp:jingle:apps:rtp:1", media: "audio" }),
          )
        : xml(action, { xmlns: ns, id: call.id });
    return {
      kind: "call",
      from: `${from}/phone`,
      to,
      stanza: xml(
        "message",
        { to, id, type: "chat" },
        signal,
        xml("store", { xmlns: "urn:xmpp:hints" }),
      ),
    };
  }

  private text(): string {
    const n = 2 + Math.floor(this.rand() * 14);
    const words: string[] = [];
    for (let i = 0; i < n; i++) words.push(WORDS[Math.floor(this.rand() * WORDS.length)] ?? "ok");
    return words.join(" ");
  }
}
