import xml, { type Element, Parser } from "@xmpp/xml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ParsedCopy, parseCopy } from "../../src/ingest/parse.js";
import { appendBatch, type WriteOptions } from "../../src/store/events.js";
import { nextTime } from "../helpers/copies.js";
import { openTestStore, type TestStore } from "../helpers/database.js";
import { generator } from "../helpers/histories.js";

/**
 * Stanzas any client can send, with hostile values in every id, address, body and reaction, as
 * ejabberd would route them: whatever parsing accepts, the store must take in one batch. A value
 * the store cannot hold would fail the whole batch and lose the copy.
 */

const options: WriteOptions = {
  isLocal: (jid) => jid.endsWith("@example.org"),
  callRingTimeoutMs: 60_000,
};

/** The seeded generator, with hostile texts and addresses. */
function hostile(seed: number) {
  const { int, pick } = generator(seed);
  const chars = (alphabet: string, n: number) =>
    Array.from({ length: n }, () => alphabet[int(alphabet.length)]).join("");
  const ascii = (n: number) =>
    chars("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~!$()*+,;=", n);
  const cjk = (n: number) =>
    Array.from({ length: n }, () => String.fromCharCode(0x4e00 + int(0x5000))).join("");
  /** Texts of every awkward kind and length, random so they do not compress. */
  const text = () =>
    pick([
      () => " ",
      () => ascii(1),
      () => ascii(36),
      () => ascii(1023),
      () => ascii(1024),
      () => ascii(1025),
      () => ascii(3000),
      () => cjk(341),
      () => cjk(342),
      () => cjk(1000),
      () => "🎉".repeat(1 + int(600)),
      () => `e\u0301${"\u200b\u202e".repeat(int(100))}`,
      () => `<b>'"&amp;</b>${ascii(int(50))}`,
    ])();
  /** A local part of this server or of another one, up to RFC 7622's 1,023 bytes. */
  const jid = () => {
    const local = pick([() => ascii(8), () => ascii(1023), () => cjk(341), () => "ünï-çødé"])();
    return `${local}@${pick(["example.org", "example.org", "remote.example"])}`;
  };
  return { int, pick, text, jid };
}

type Generator = ReturnType<typeof hostile>;

/** One original of a random kind, every attribute and text hostile. */
function original(g: Generator, from: string, to: string): Element {
  const attrs = {
    xmlns: "jabber:client",
    from: `${from}/${g.text()}`,
    to,
    type: "chat",
    id: g.text(),
  };
  const originId = xml("origin-id", { xmlns: "urn:xmpp:sid:0", id: g.text() });
  const kinds: (() => Element[])[] = [
    () => [xml("body", {}, g.text()), originId],
    () => [
      xml("body", {}, g.text()),
      xml("replace", { xmlns: "urn:xmpp:message-correct:0", id: g.text() }),
    ],
    () => [xml("retract", { xmlns: "urn:xmpp:message-retract:1", id: g.text() })],
    () => [
      xml(
        "reactions",
        { xmlns: "urn:xmpp:reactions:0", id: g.text() },
        ...Array.from({ length: 1 + g.int(20) }, () => xml("reaction", {}, g.text())),
      ),
    ],
    () => [
      xml(g.pick(["displayed", "received", "acknowledged"]), {
        xmlns: "urn:xmpp:chat-markers:0",
        id: g.text(),
      }),
    ],
    () => [
      xml(
        g.pick(["propose", "ringing", "proceed", "accept", "reject", "retract", "finish"]),
        { xmlns: "urn:xmpp:jingle-message:0", id: g.text() },
        xml("description", { xmlns: "urn:xmpp:jingle:apps:rtp:1", media: g.text() }),
        xml("migrated", { to: g.text() }),
      ),
    ],
  ];
  return xml("message", attrs, ...g.pick(kinds)());
}

/** The copy as mod_syncside routes it, written out and read back by the stream parser. */
function copyWire(inner: Element): Element {
  const copy = xml(
    "message",
    {
      from: "example.org",
      to: "observer@example.org",
      id: `tap-${Math.random().toString(36).slice(2)}`,
    },
    xml(
      "forwarded",
      { xmlns: "urn:xmpp:forward:0" },
      xml("delay", { xmlns: "urn:xmpp:delay", stamp: nextTime().toISOString() }),
      inner,
    ),
  );
  const parser = new Parser();
  let read: Element | undefined;
  parser.on("element", (element: Element) => {
    read = element;
  });
  parser.write(`<stream xmlns="jabber:client">${copy.toString()}`);
  if (!read) throw new Error("the copy did not parse back");
  read.parent = null;
  return read;
}

describe.each(["postgres", "pglite"] as const)(
  "hostile stanzas through parse and store on %s",
  (driver) => {
    let t: TestStore;
    beforeAll(async () => {
      t = await openTestStore(driver);
    });
    afterAll(() => t?.close());

    it.each([1, 2, 3])(
      "stores in one batch every copy that parsing accepts (seed %i)",
      async (seed) => {
        const g = hostile(seed);
        // A few accounts and peers, so modifiers sometimes hit a message of the same batch.
        const people = Array.from({ length: 6 }, () => g.jid());
        const copies: ParsedCopy[] = [];
        for (let i = 0; i < 300; i++) {
          const from = g.pick(people);
          const to = g.pick(people.filter((p) => p !== from));
          const parsed = parseCopy(copyWire(original(g, from, to)));
          // Some are refused (a resource over 1,023 bytes, say): the store is what is under test.
          if (parsed.ok) copies.push(parsed.copy);
        }
        const events = copies.flatMap((c) => c.events);
        expect(events.length).toBeGreaterThan(50);
        const result = await appendBatch(t.store.db, { copies }, options);
        expect(result.written + result.foreign).toBeGreaterThanOrEqual(events.length);
      },
    );
  },
);
