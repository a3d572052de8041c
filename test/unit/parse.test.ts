import { readFileSync } from "node:fs";
import xml, { type Element, Parser } from "@xmpp/xml";
import { describe, expect, it } from "vitest";
import {
  type CallSignal,
  type ConversationEvent,
  MAX_ID_BYTES,
  MAX_STANZA_BYTES,
  type ParseResult,
  parseCopy,
} from "../../src/ingest/parse.js";

const COPY_ID = "COPY-ID";
const STAMP = "2026-11-26T08:00:00.123456Z";
const SENT_AT = new Date("2026-11-26T08:00:00.123Z");
const SENDER_ARCHIVE_ID = "1732600000123456";

interface CopyOptions {
  /** Stamped as `from` when the original has none, as the sender's server does when routing it. */
  sender?: string;
  copyFrom?: string | null;
  id?: string | null;
  stamp?: string | null;
  senderArchiveId?: string | null;
}

/** Wraps an original the way the syncside ejabberd module routes its copy to the observer. */
function copyOf(original: Element, options: CopyOptions = {}): Element {
  if (original.attrs.from === undefined && options.sender !== undefined) {
    original.attrs.from = options.sender;
  }
  // XEP-0297: a forwarded stanza is qualified by its stream namespace; ejabberd always writes it.
  if (original.attrs.xmlns === undefined) {
    original.attrs.xmlns = "jabber:client";
  }
  const stamp = options.stamp === undefined ? STAMP : options.stamp;
  return xml(
    "message",
    {
      from: options.copyFrom === undefined ? "example.org" : options.copyFrom,
      to: "observer@example.org",
      id: options.id === undefined ? COPY_ID : options.id,
      type: "normal",
    },
    xml(
      "forwarded",
      { xmlns: "urn:xmpp:forward:0" },
      ...(stamp === null ? [] : [xml("delay", { xmlns: "urn:xmpp:delay", stamp })]),
      original,
    ),
    xml("tap", {
      xmlns: "urn:syncside:tap:0",
      "sender-archive-id":
        options.senderArchiveId === undefined ? SENDER_ARCHIVE_ID : options.senderArchiveId,
    }),
    xml("store", { xmlns: "urn:xmpp:hints" }),
    xml("offline", { xmlns: "http://jabber.org/protocol/offline" }),
    xml("stanza-id", { xmlns: "urn:xmpp:sid:0", by: "observer@example.org", id: "obs-1" }),
  );
}

// The same stream parser @xmpp/client uses, so fixtures become the Elements ingest really sees.
function parseXml(text: string): Element {
  const parser = new Parser();
  const roots: Element[] = [];
  const errors: Error[] = [];
  parser.on("start", (element: Element) => roots.push(element));
  parser.on("element", (element: Element) => roots[0]?.append(element));
  parser.on("error", (error: Error) => errors.push(error));
  parser.write(text);
  const [root] = roots;
  if (errors.length > 0 || root === undefined) {
    throw new Error(`bad fixture: ${errors[0]?.message ?? "no root element"}`);
  }
  return root;
}

function fixture(name: string): Element {
  const url = new URL(`../fixtures/stanzas/${name}.xml`, import.meta.url);
  return parseXml(readFileSync(url, "utf8"));
}

type EventFields = Pick<ConversationEvent, "kind" | "from" | "fromResource" | "to" | "raw"> &
  Partial<ConversationEvent>;

function event(fields: EventFields): ConversationEvent {
  return {
    messageId: null,
    originId: null,
    targetId: null,
    body: null,
    reactions: null,
    marker: null,
    call: null,
    ...fields,
  };
}

function accepted(events: ConversationEvent[], ignored: string | null = null): ParseResult {
  return {
    ok: true,
    copy: {
      copyId: COPY_ID,
      origin: "example.org",
      senderArchiveId: SENDER_ARCHIVE_ID,
      fromLocal: null,
      toLocal: null,
      sentAt: SENT_AT,
      events,
      ignored,
    },
  };
}

function chat(attrs: Record<string, string>, ...children: Element[]): Element {
  return xml(
    "message",
    {
      xmlns: "jabber:client",
      from: "alice@example.org/phone",
      to: "bob@example.org",
      type: "chat",
      id: "m1",
      ...attrs,
    },
    ...children,
  );
}

const ALICE = { from: "alice@example.org", fromResource: "phone", to: "bob@example.org" };

describe("parseCopy: messages", () => {
  it("turns a plain body into a message event (XEP-0308 example 3)", () => {
    const original = fixture("xep-0308-original");
    const result = parseCopy(copyOf(original, { sender: "romeo@montague.net/orchard" }));
    expect(result).toEqual(
      accepted([
        event({
          kind: "message",
          from: "romeo@montague.net",
          fromResource: "orchard",
          to: "juliet@capulet.net",
          messageId: "bad1",
          body: "But soft, what light through yonder airlock breaks?",
          raw: original.toString(),
        }),
      ]),
    );
  });

  it("treats a message without type as normal and ignores its chat state (XEP-0085 example 3)", () => {
    const original = fixture("xep-0085-active");
    expect(parseCopy(copyOf(original))).toEqual(
      accepted([
        event({
          kind: "message",
          from: "bernardo@shakespeare.lit",
          fromResource: "pda",
          to: "francisco@shakespeare.lit",
          body: "Who's there?",
          raw: original.toString(),
        }),
      ]),
    );
  });

  it("does not take a receipt request or a markable hint for a marker (XEP-0184 ex. 3, XEP-0333 ex. 3)", () => {
    const request = fixture("xep-0184-request");
    const markable = fixture("xep-0333-markable");
    expect(parseCopy(copyOf(request))).toEqual(
      accepted([
        event({
          kind: "message",
          from: "northumberland@shakespeare.lit",
          fromResource: "westminster",
          to: "kingrichard@royalty.england.lit",
          messageId: "richard2-4.1.247",
          body: "My lord, dispatch; read o'er these articles.",
          raw: request.toString(),
        }),
      ]),
    );
    expect(parseCopy(copyOf(markable))).toEqual(
      accepted([
        event({
          kind: "message",
          from: "romeo@montegue.lit",
          fromResource: "orchard",
          to: "juliet@capulet.lit",
          messageId: "the-msg-1",
          body: "Hi. How are you?",
          raw: markable.toString(),
        }),
      ]),
    );
  });

  it("keeps the XEP-0359 origin-id", () => {
    const original = chat(
      {},
      xml("body", {}, "hi"),
      xml("origin-id", { xmlns: "urn:xmpp:sid:0", id: "de305d54-75b4-431b-adb2-eb6b9e546013" }),
    );
    expect(parseCopy(copyOf(original))).toEqual(
      accepted([
        event({
          kind: "message",
          ...ALICE,
          messageId: "m1",
          originId: "de305d54-75b4-431b-adb2-eb6b9e546013",
          body: "hi",
          raw: original.toString(),
        }),
      ]),
    );
  });

  it("keeps a body exactly, and an all-whitespace body is still content", () => {
    const spaced = chat({}, xml("body", {}, "  two  spaces \n"));
    const blank = chat({}, xml("body", {}, " \n\t "));
    expect(parseCopy(copyOf(spaced))).toEqual(
      accepted([
        event({
          kind: "message",
          ...ALICE,
          messageId: "m1",
          body: "  two  spaces \n",
          raw: spaced.toString(),
        }),
      ]),
    );
    expect(parseCopy(copyOf(blank))).toEqual(
      accepted([
        event({
          kind: "message",
          ...ALICE,
          messageId: "m1",
          body: " \n\t ",
          raw: blank.toString(),
        }),
      ]),
    );
  });

  it("treats an empty <body/> as no content", () => {
    expect(parseCopy(copyOf(chat({}, xml("body", {}))))).toEqual(accepted([], "no_content"));
  });

  it("picks the body without xml:lang when there are translations (RFC 6121 5.2.3)", () => {
    const original = chat({}, xml("body", { "xml:lang": "de" }, "Hallo"), xml("body", {}, "Hello"));
    expect(parseCopy(copyOf(original))).toEqual(
      accepted([
        event({
          kind: "message",
          ...ALICE,
          messageId: "m1",
          body: "Hello",
          raw: original.toString(),
        }),
      ]),
    );
  });

  it("keeps unknown extensions in raw, untouched", () => {
    const original = chat(
      {},
      xml("body", {}, "see attached"),
      xml("x", { xmlns: "urn:example:unknown", flavour: "salty" }, xml("y", {}, "1 < 2 & 3")),
    );
    const result = parseCopy(copyOf(original));
    expect(result).toEqual(
      accepted([
        event({
          kind: "message",
          ...ALICE,
          messageId: "m1",
          body: "see attached",
          raw:
            '<message xmlns="jabber:client" from="alice@example.org/phone" to="bob@example.org" type="chat" id="m1">' +
            "<body>see attached</body>" +
            '<x xmlns="urn:example:unknown" flavour="salty"><y>1 &lt; 2 &amp; 3</y></x>' +
            "</message>",
        }),
      ]),
    );
  });

  it("normalizes JIDs through @xmpp/jid: lowercased bare JIDs, resource kept as sent", () => {
    const original = chat(
      { from: "Alice@Example.ORG/Phone", to: "BOB@example.org/Desk" },
      xml("body", {}, "x"),
    );
    expect(parseCopy(copyOf(original))).toEqual(
      accepted([
        event({
          kind: "message",
          from: "alice@example.org",
          fromResource: "Phone",
          to: "bob@example.org",
          messageId: "m1",
          body: "x",
          raw: original.toString(),
        }),
      ]),
    );
  });

  it("spells JIDs as ejabberd compares them: full-width and invisible characters prepared away", () => {
    // Both are alice and bob to ejabberd (nodeprep); one account must not become two.
    const original = chat(
      { from: "\uFF21lice@example.org/Phone", to: "b\u00ADob\u200B@EXAMPLE.org/Desk" },
      xml("body", {}, "x"),
    );
    const parsed = parseCopy(copyOf(original));
    expect(parsed).toMatchObject({
      ok: true,
      copy: { events: [{ from: "alice@example.org", to: "bob@example.org" }] },
    });
  });

  it("rejects a JID whose local part is nothing once prepared", () => {
    const original = chat({ to: "\u00AD\u200B@example.org" }, xml("body", {}, "x"));
    expect(parseCopy(copyOf(original))).toMatchObject({ ok: false });
  });

  it("reports a sender without resource as fromResource null", () => {
    const original = chat({ from: "alice@example.org" }, xml("body", {}, "x"));
    expect(parseCopy(copyOf(original))).toEqual(
      accepted([
        event({
          kind: "message",
          ...ALICE,
          fromResource: null,
          messageId: "m1",
          body: "x",
          raw: original.toString(),
        }),
      ]),
    );
  });

  it("emits the message first, then the marker it carries", () => {
    const original = chat(
      {},
      xml("body", {}, "seen it, and yes"),
      xml("displayed", { xmlns: "urn:xmpp:chat-markers:0", id: "m0" }),
    );
    const raw = original.toString();
    expect(parseCopy(copyOf(original))).toEqual(
      accepted([
        event({ kind: "message", ...ALICE, messageId: "m1", body: "seen it, and yes", raw }),
        event({
          kind: "displayed",
          ...ALICE,
          messageId: "m1",
          targetId: "m0",
          marker: "displayed",
          raw,
        }),
      ]),
    );
  });

  it("keeps the copy's id and stamp, and a missing sender archive id is null", () => {
    const original = chat({}, xml("body", {}, "x"));
    const result = parseCopy(copyOf(original, { id: "other-copy", senderArchiveId: null }));
    expect(result).toEqual({
      ok: true,
      copy: {
        copyId: "other-copy",
        origin: "example.org",
        senderArchiveId: null,
        fromLocal: null,
        toLocal: null,
        sentAt: SENT_AT,
        events: [
          event({
            kind: "message",
            ...ALICE,
            messageId: "m1",
            body: "x",
            raw: original.toString(),
          }),
        ],
        ignored: null,
      },
    });
  });

  it("reads a copy flushed from offline storage by the forwarded stamp, not the storage's", () => {
    // As ejabberd 23.01 delivered a copy its archive had refused, spooled by mod_offline while
    // the observer was away, at the observer's next login.
    const flushed = parseXml(
      `<message xmlns="jabber:client" to="observer@example.org" from="example.org" id="tap-HOJNJR4EJA-5a95751cb4ad1fd1eade">` +
        `<forwarded xmlns="urn:xmpp:forward:0"><message xmlns="jabber:client" xml:lang="en" to="bob@example.org" from="alice@example.org/phone" type="chat" id="away-1"><body>away 1</body></message>` +
        `<delay xmlns="urn:xmpp:delay" stamp="2026-11-27T07:54:40.666095Z"/></forwarded>` +
        `<tap xmlns="urn:syncside:tap:0" from-local="true" to-local="true" sender-archive-id="1795766080664975"/>` +
        `<store xmlns="urn:xmpp:hints"/>` +
        `<delay xmlns="urn:xmpp:delay" from="example.org" stamp="2026-11-27T07:54:41.667069Z">Offline Storage</delay>` +
        `</message>`,
    );
    const result = parseCopy(flushed);
    expect(result.ok && result.copy).toMatchObject({
      copyId: "tap-HOJNJR4EJA-5a95751cb4ad1fd1eade",
      origin: "example.org",
      senderArchiveId: "1795766080664975",
      fromLocal: true,
      toLocal: true,
      sentAt: new Date("2026-11-27T07:54:40.666Z"),
      events: [{ kind: "message", ...ALICE, messageId: "away-1", body: "away 1" }],
    });
  });

  it("reads a stamp with a zone offset and a fraction of any length (XEP-0082)", () => {
    const result = parseCopy(
      copyOf(chat({}, xml("body", {}, "x")), { stamp: "2026-11-26T09:30:00.5+01:30" }),
    );
    expect(result.ok && result.copy.sentAt).toEqual(new Date("2026-11-26T08:00:00.500Z"));
    const plain = parseCopy(
      copyOf(chat({}, xml("body", {}, "x")), { stamp: "2026-11-26T08:00:00Z" }),
    );
    expect(plain.ok && plain.copy.sentAt).toEqual(new Date("2026-11-26T08:00:00.000Z"));
    const west = parseCopy(
      copyOf(chat({}, xml("body", {}, "x")), { stamp: "2026-11-26T03:00:00-05:00" }),
    );
    expect(west.ok && west.copy.sentAt).toEqual(new Date("2026-11-26T08:00:00.000Z"));
  });
});

describe("parseCopy: edits (XEP-0308)", () => {
  it("turns a correction into an edit of the replaced id (example 4)", () => {
    const original = fixture("xep-0308-correction");
    expect(parseCopy(copyOf(original, { sender: "romeo@montague.net/orchard" }))).toEqual(
      accepted([
        event({
          kind: "edit",
          from: "romeo@montague.net",
          fromResource: "orchard",
          to: "juliet@capulet.net",
          messageId: "good1",
          targetId: "bad1",
          body: "But soft, what light through yonder window breaks?",
          raw: original.toString(),
        }),
      ]),
    );
  });

  it("ignores a correction without new body or without id", () => {
    const noBody = chat({}, xml("replace", { xmlns: "urn:xmpp:message-correct:0", id: "m0" }));
    const noId = chat(
      {},
      xml("body", {}, "fixed"),
      xml("replace", { xmlns: "urn:xmpp:message-correct:0" }),
    );
    expect(parseCopy(copyOf(noBody))).toEqual(accepted([], "bad_edit"));
    expect(parseCopy(copyOf(noId))).toEqual(accepted([], "bad_edit"));
  });
});

describe("parseCopy: retractions (XEP-0424)", () => {
  it("reads urn:xmpp:message-retract:1 and drops the fallback body (0.4.2 example 4)", () => {
    const original = fixture("xep-0424-retract");
    expect(parseCopy(copyOf(original, { sender: "romeo@montague.example/orchard" }))).toEqual(
      accepted([
        event({
          kind: "retract",
          from: "romeo@montague.example",
          fromResource: "orchard",
          to: "lord@capulet.example",
          messageId: "retract-message-1",
          targetId: "wrong-recipient-1",
          raw: original.toString(),
        }),
      ]),
    );
  });

  it("reads the older :0 form fastened with XEP-0422 <apply-to> (0.3.0 example 4)", () => {
    const original = fixture("xep-0424-retract-fastened");
    expect(parseCopy(copyOf(original, { sender: "romeo@montague.example/orchard" }))).toEqual(
      accepted([
        event({
          kind: "retract",
          from: "romeo@montague.example",
          fromResource: "orchard",
          to: "lord@capulet.example",
          messageId: "retract-message-1",
          targetId: "origin-id-1",
          raw: original.toString(),
        }),
      ]),
    );
  });

  it("ignores a retraction that names no message, fallback body included", () => {
    const original = chat(
      {},
      xml("retract", { xmlns: "urn:xmpp:message-retract:1" }),
      xml("body", {}, "/me retracted a previous message"),
    );
    expect(parseCopy(copyOf(original))).toEqual(accepted([], "bad_retract"));
  });

  it("does not mistake a <retract> of another namespace for a retraction", () => {
    const original = chat(
      {},
      xml("retract", { xmlns: "urn:example:other", id: "m0" }),
      xml("body", {}, "still a message"),
    );
    expect(parseCopy(copyOf(original))).toEqual(
      accepted([
        event({
          kind: "message",
          ...ALICE,
          messageId: "m1",
          body: "still a message",
          raw: original.toString(),
        }),
      ]),
    );
  });
});

describe("parseCopy: reactions (XEP-0444)", () => {
  const juliet = {
    from: "juliet@capulet.net",
    fromResource: "balcony",
    to: "romeo@capulet.net",
  };
  const target = "744f6e18-a57a-11e9-a656-4889e7820c76";

  it.each([
    ["xep-0444-reaction", "7fdd29fa-a57a-11e9-b04a-4889e7820c76", ["👋"]],
    ["xep-0444-reaction-update", "96d73204-a57a-11e9-88b8-4889e7820c76", ["👋", "🐢"]],
    ["xep-0444-reaction-remove-all", "973c9d2e-a57a-11e9-af82-4889e7820c76", []],
  ])("reads %s as the sender's full set", (name, messageId, reactions) => {
    const original = fixture(name);
    expect(parseCopy(copyOf(original, { sender: "juliet@capulet.net/balcony" }))).toEqual(
      accepted([
        event({
          kind: "reaction",
          ...juliet,
          messageId,
          targetId: target,
          reactions,
          raw: original.toString(),
        }),
      ]),
    );
  });

  it("trims, drops empty entries, dedupes in order, and ignores the fallback body", () => {
    const original = chat(
      {},
      xml(
        "reactions",
        { xmlns: "urn:xmpp:reactions:0", id: "m0" },
        xml("reaction", {}, " 👍 "),
        xml("reaction", {}, "❤️"),
        xml("reaction", {}, "   "),
        xml("reaction", {}),
        xml("reaction", {}, "👍"),
        xml("reaction", {}, "👨‍👩‍👧"),
      ),
      xml("body", {}, "👍❤️"),
    );
    expect(parseCopy(copyOf(original))).toEqual(
      accepted([
        event({
          kind: "reaction",
          ...ALICE,
          messageId: "m1",
          targetId: "m0",
          reactions: ["👍", "❤️", "👨‍👩‍👧"],
          raw: original.toString(),
        }),
      ]),
    );
  });

  it("ignores reactions that name no message", () => {
    const original = chat(
      {},
      xml("reactions", { xmlns: "urn:xmpp:reactions:0" }, xml("reaction", {}, "👍")),
    );
    expect(parseCopy(copyOf(original))).toEqual(accepted([], "bad_reaction"));
  });
});

describe("parseCopy: markers (XEP-0333, XEP-0184)", () => {
  const richard = {
    from: "kingrichard@royalty.england.lit",
    fromResource: "throne",
    to: "northumberland@shakespeare.lit",
  };

  it("reads <displayed/> (XEP-0333 1.0.0 example 4)", () => {
    const original = fixture("xep-0333-displayed");
    expect(parseCopy(copyOf(original))).toEqual(
      accepted([
        event({
          kind: "displayed",
          from: "juliet@capulet.let",
          fromResource: "balcony",
          to: "romeo@montegue.lit",
          targetId: "the-msg-1",
          marker: "displayed",
          raw: original.toString(),
        }),
      ]),
    );
  });

  it("reads chat-marker <received/> as received (XEP-0333 0.4.1 example 4)", () => {
    const original = fixture("xep-0333-received");
    expect(parseCopy(copyOf(original))).toEqual(
      accepted([
        event({
          kind: "received",
          ...richard,
          messageId: "message-2",
          targetId: "message-1",
          marker: "received",
          raw: original.toString(),
        }),
      ]),
    );
  });

  it("reads <acknowledged/> as a displayed event that says which marker it was", () => {
    const original = fixture("xep-0333-acknowledged");
    expect(parseCopy(copyOf(original))).toEqual(
      accepted([
        event({
          kind: "displayed",
          ...richard,
          messageId: "message-3",
          targetId: "message-1",
          marker: "acknowledged",
          raw: original.toString(),
        }),
      ]),
    );
  });

  it("reads a XEP-0184 delivery receipt as received (example 4)", () => {
    const original = fixture("xep-0184-received");
    expect(parseCopy(copyOf(original))).toEqual(
      accepted([
        event({
          kind: "received",
          ...richard,
          messageId: "bi29sg183b4v",
          targetId: "richard2-4.1.247",
          marker: "received",
          raw: original.toString(),
        }),
      ]),
    );
  });

  it("counts a receipt and a chat-marker <received/> for the same message once", () => {
    const original = chat(
      {},
      xml("received", { xmlns: "urn:xmpp:receipts", id: "m0" }),
      xml("received", { xmlns: "urn:xmpp:chat-markers:0", id: "m0" }),
      xml("displayed", { xmlns: "urn:xmpp:chat-markers:0", id: "m0" }),
    );
    const raw = original.toString();
    expect(parseCopy(copyOf(original))).toEqual(
      accepted([
        event({
          kind: "received",
          ...ALICE,
          messageId: "m1",
          targetId: "m0",
          marker: "received",
          raw,
        }),
        event({
          kind: "displayed",
          ...ALICE,
          messageId: "m1",
          targetId: "m0",
          marker: "displayed",
          raw,
        }),
      ]),
    );
  });

  it("ignores a marker that names no message", () => {
    const original = chat({}, xml("displayed", { xmlns: "urn:xmpp:chat-markers:0" }));
    expect(parseCopy(copyOf(original))).toEqual(accepted([], "bad_marker"));
  });
});

describe("parseCopy: calls (XEP-0353)", () => {
  const CALL = "ca3cf894-5325-482f-a412-a6e9f832298d";
  const romeo = {
    from: "romeo@montague.example",
    fromResource: "orchard",
    to: "juliet@capulet.example",
  };
  const juliet = {
    from: "juliet@capulet.example",
    fromResource: "phone",
    to: "romeo@montague.example",
  };
  const signal = (
    fields: Partial<CallSignal> & Pick<CallSignal, "action" | "callId">,
  ): CallSignal => ({
    media: [],
    reason: null,
    migratedTo: null,
    ...fields,
  });

  it.each([
    ["xep-0353-propose", romeo, signal({ action: "propose", callId: CALL, media: ["audio"] })],
    ["xep-0353-ringing", juliet, signal({ action: "ringing", callId: CALL })],
    ["xep-0353-proceed", juliet, signal({ action: "proceed", callId: CALL })],
    ["xep-0353-reject", juliet, signal({ action: "reject", callId: CALL, reason: "busy" })],
    ["xep-0353-retract", romeo, signal({ action: "retract", callId: CALL, reason: "cancel" })],
    [
      "xep-0353-finish",
      { ...romeo, to: "juliet@capulet.example" },
      signal({ action: "finish", callId: CALL, reason: "success" }),
    ],
    [
      "xep-0353-reject-tie-break",
      romeo,
      signal({
        action: "reject",
        callId: "fecbea35-08d3-404f-9ec7-2b57c566fa74",
        reason: "tie-break",
      }),
    ],
    [
      "xep-0353-finish-migrated",
      romeo,
      signal({
        action: "finish",
        callId: CALL,
        reason: "expired",
        migratedTo: "989a46a6-f202-4910-a7c3-83c6ba3f3947",
      }),
    ],
    [
      "xep-0353-v1-propose",
      romeo,
      signal({ action: "propose", callId: "a73sjjvkla37jfea", media: ["audio"] }),
    ],
    ["xep-0353-v1-accept", juliet, signal({ action: "accept", callId: "a73sjjvkla37jfea" })],
    [
      "xep-0353-v1-reject",
      juliet,
      signal({ action: "reject", callId: "a73sjjvkla37jfea", reason: "busy" }),
    ],
    [
      "xep-0353-v1-retract",
      romeo,
      signal({ action: "retract", callId: "a73sjjvkla37jfea", reason: "cancel" }),
    ],
    [
      "xep-0353-v1-finish",
      juliet,
      signal({ action: "finish", callId: "a73sjjvkla37jfea", reason: "success" }),
    ],
  ])("reads %s", (name, parties, call) => {
    const original = fixture(name);
    expect(parseCopy(copyOf(original))).toEqual(
      accepted([event({ kind: "call", ...parties, call, raw: original.toString() })]),
    );
  });

  it("collects media from every description, any namespace, once each", () => {
    const original = chat(
      {},
      xml(
        "propose",
        { xmlns: "urn:xmpp:jingle-message:0", id: "c1" },
        xml("description", { xmlns: "urn:xmpp:jingle:apps:rtp:1", media: "audio" }),
        xml("description", { xmlns: "urn:xmpp:jingle:apps:rtp:1", media: "video" }),
        xml("description", { xmlns: "urn:example:apps:other", media: "audio" }),
        xml("description", { xmlns: "urn:example:apps:other" }),
      ),
      xml("body", {}, "Incoming call"),
    );
    expect(parseCopy(copyOf(original))).toEqual(
      accepted([
        event({
          kind: "call",
          ...ALICE,
          messageId: "m1",
          call: signal({ action: "propose", callId: "c1", media: ["audio", "video"] }),
          raw: original.toString(),
        }),
      ]),
    );
  });

  it("ignores a call signal without session id, fallback body included", () => {
    const original = chat(
      {},
      xml("propose", { xmlns: "urn:xmpp:jingle-message:0" }),
      xml("body", {}, "Incoming call"),
    );
    expect(parseCopy(copyOf(original))).toEqual(accepted([], "bad_call"));
  });

  it("skips <text/> when reading the reason condition", () => {
    const original = chat(
      {},
      xml(
        "reject",
        { xmlns: "urn:xmpp:jingle-message:0", id: "c1" },
        xml("reason", { xmlns: "urn:xmpp:jingle:1" }, xml("text", {}, "later"), xml("decline", {})),
      ),
    );
    expect(parseCopy(copyOf(original))).toEqual(
      accepted([
        event({
          kind: "call",
          ...ALICE,
          messageId: "m1",
          call: signal({ action: "reject", callId: "c1", reason: "decline" }),
          raw: original.toString(),
        }),
      ]),
    );
  });
});

describe("parseCopy: ids too long to be keys of the store", () => {
  // 3-byte characters: the limit is in UTF-8 bytes, not characters.
  const atLimit = "€".repeat(MAX_ID_BYTES / 4) + "x".repeat(MAX_ID_BYTES / 4);
  const over = `${atLimit}x`;

  it("keeps ids of MAX_ID_BYTES bytes", () => {
    expect(Buffer.byteLength(atLimit)).toBe(MAX_ID_BYTES);
    const original = chat(
      { id: atLimit },
      xml("body", {}, "hi"),
      xml("origin-id", { xmlns: "urn:xmpp:sid:0", id: atLimit }),
    );
    expect(parseCopy(copyOf(original))).toEqual(
      accepted([
        event({
          kind: "message",
          ...ALICE,
          messageId: atLimit,
          originId: atLimit,
          body: "hi",
          raw: original.toString(),
        }),
      ]),
    );
  });

  it("keeps a message whose ids are longer, without them: it is stored under its copy id", () => {
    const original = chat(
      { id: over },
      xml("body", {}, "hi"),
      xml("origin-id", { xmlns: "urn:xmpp:sid:0", id: over }),
    );
    expect(parseCopy(copyOf(original))).toEqual(
      accepted([event({ kind: "message", ...ALICE, body: "hi", raw: original.toString() })]),
    );
  });

  const naming: [string, Element[]][] = [
    [
      "an edit",
      [xml("body", {}, "fixed"), xml("replace", { xmlns: "urn:xmpp:message-correct:0", id: over })],
    ],
    [
      "a retraction",
      [
        xml("body", {}, "fallback"),
        xml("retract", { xmlns: "urn:xmpp:message-retract:1", id: over }),
      ],
    ],
    [
      "a reaction",
      [xml("reactions", { xmlns: "urn:xmpp:reactions:0", id: over }, xml("reaction", {}, "👍"))],
    ],
    ["a marker", [xml("displayed", { xmlns: "urn:xmpp:chat-markers:0", id: over })]],
    ["a call signal", [xml("propose", { xmlns: "urn:xmpp:jingle-message:0", id: over })]],
  ];
  it.each(naming)(
    "ignores %s that names a longer id, fallback body included: it can match nothing stored",
    (_, children) => {
      expect(parseCopy(copyOf(chat({}, ...children)))).toEqual(accepted([], "oversized_id"));
    },
  );

  it("takes a finish that migrates to a longer id as a plain finish: no stored session has it", () => {
    const ns = "urn:xmpp:jingle-message:0";
    const finish = xml("finish", { xmlns: ns, id: "s1" }, xml("migrated", { to: over }));
    const parsed = parseCopy(copyOf(chat({}, finish)));
    expect(parsed.ok && parsed.copy.events[0]?.call).toMatchObject({
      action: "finish",
      callId: "s1",
      migratedTo: null,
    });
  });
});

describe("parseCopy: ignored copies", () => {
  it("ignores groupchat (XEP-0359 example 2)", () => {
    const original = fixture("xep-0359-origin-id");
    expect(parseCopy(copyOf(original, { sender: "romeo@montague.example/orchard" }))).toEqual(
      accepted([], "groupchat"),
    );
  });

  it.each(["error", "headline"])("ignores type %s", (type) => {
    expect(parseCopy(copyOf(chat({ type }, xml("body", {}, "x"))))).toEqual(accepted([], type));
  });

  it("ignores carbons, even forged ones (XEP-0280 example 11)", () => {
    expect(parseCopy(copyOf(fixture("xep-0280-carbon-impersonation")))).toEqual(
      accepted([], "carbon"),
    );
  });

  it("ignores MAM results", () => {
    const original = chat(
      { type: "normal" },
      xml(
        "result",
        { xmlns: "urn:xmpp:mam:2", queryid: "q1", id: "a1" },
        xml("forwarded", { xmlns: "urn:xmpp:forward:0" }),
      ),
    );
    expect(parseCopy(copyOf(original))).toEqual(accepted([], "mam"));
  });

  it("ignores messages to oneself", () => {
    const original = chat({ to: "ALICE@example.org/desk" }, xml("body", {}, "note to self"));
    expect(parseCopy(copyOf(original))).toEqual(accepted([], "self"));
  });

  it("takes a message to or from a bare domain (a component, the server) as any other", () => {
    const motd = chat({ from: "example.org" }, xml("body", {}, "motd"));
    expect(parseCopy(copyOf(motd))).toEqual(
      accepted([
        event({
          kind: "message",
          from: "example.org",
          fromResource: null,
          to: "bob@example.org",
          messageId: "m1",
          body: "motd",
          raw: motd.toString(),
        }),
      ]),
    );
    const toGateway = chat({ to: "gateway.example.org" }, xml("body", {}, "x"));
    expect(parseCopy(copyOf(toGateway))).toMatchObject({
      ok: true,
      copy: { events: [{ from: "alice@example.org", to: "gateway.example.org", body: "x" }] },
    });
  });

  it("ignores a standalone chat state (XEP-0085 example 5)", () => {
    expect(parseCopy(copyOf(fixture("xep-0085-composing")))).toEqual(accepted([], "chat_state"));
  });

  it("ignores a message with nothing it recognises", () => {
    const original = chat({}, xml("x", { xmlns: "urn:example:unknown" }));
    expect(parseCopy(copyOf(original))).toEqual(accepted([], "no_content"));
  });
});

describe("parseCopy: rejected copies", () => {
  const body = () => chat({}, xml("body", {}, "x"));

  it("rejects what is not a copy", () => {
    expect(parseCopy(xml("iq", { type: "get", id: "i1" }))).toEqual({
      ok: false,
      reason: "not_a_copy",
      detail: "expected <message>, got <iq>",
    });
    expect(parseCopy(body())).toEqual({
      ok: false,
      reason: "not_a_copy",
      detail: "no forwarded <message>",
    });
    const empty = xml(
      "message",
      { from: "example.org", id: "c" },
      xml("forwarded", { xmlns: "urn:xmpp:forward:0" }),
    );
    expect(parseCopy(empty)).toEqual({
      ok: false,
      reason: "not_a_copy",
      detail: "no forwarded <message>",
    });
  });

  it("rejects a copy that a user rather than the server sent", () => {
    expect(parseCopy(copyOf(body(), { copyFrom: "mallory@example.org/x" }))).toEqual({
      ok: false,
      reason: "not_a_copy",
      detail: "copy not sent by a server: mallory@example.org/x",
    });
    expect(parseCopy(copyOf(body(), { copyFrom: null }))).toEqual({
      ok: false,
      reason: "not_a_copy",
      detail: "copy not sent by a server: no from",
    });
  });

  it("rejects a copy without id", () => {
    expect(parseCopy(copyOf(body(), { id: null }))).toEqual({
      ok: false,
      reason: "missing_id",
      detail: "copy has no id",
    });
  });

  it("rejects a copy whose id is too long to be a key of the store", () => {
    expect(parseCopy(copyOf(body(), { id: "c".repeat(MAX_ID_BYTES + 1) }))).toEqual({
      ok: false,
      reason: "oversized",
      detail: `copy id over ${MAX_ID_BYTES} bytes`,
    });
    expect(parseCopy(copyOf(body(), { id: "c".repeat(MAX_ID_BYTES) })).ok).toBe(true);
  });

  const longLocal = `${"b".repeat(1024)}@example.org`;
  it.each([
    ["a missing from", "from", undefined, "invalid from: missing"],
    ["an empty domain", "from", "alice@", "invalid from: alice@"],
    ["an empty localpart", "from", "@example.org", "invalid from: @example.org"],
    ["an empty resource", "from", "alice@example.org/", "invalid from: alice@example.org/"],
    ["a space in the localpart", "from", "al ice@example.org", "invalid from: al ice@example.org"],
    ["a space in the domain", "from", "alice@exa mple.org", "invalid from: alice@exa mple.org"],
    ["two @", "from", "alice@bob@example.org", "invalid from: alice@bob@example.org"],
    ["a 1024-byte localpart", "to", longLocal, `invalid to: ${longLocal}`],
  ])("rejects %s as a bad JID", (_case, attribute, value, detail) => {
    const original = body();
    if (value === undefined) {
      delete original.attrs[attribute];
    } else {
      original.attrs[attribute] = value;
    }
    expect(parseCopy(copyOf(original))).toEqual({ ok: false, reason: "bad_jid", detail });
  });

  it("rejects a missing delay stamp", () => {
    expect(parseCopy(copyOf(body(), { stamp: null }))).toEqual({
      ok: false,
      reason: "bad_timestamp",
      detail: "forwarded copy has no delay stamp",
    });
  });

  it.each([
    "yesterday",
    "2026-11-26 08:00:00Z",
    "2026-11-26T08:00:00",
    "2026-02-30T08:00:00Z",
    "2026-11-26T24:00:00Z",
    "2026-11-26T08:00:60Z",
    "0026-11-26T08:00:00Z",
    "2026-11-26T08:00:00+24:00",
    // Valid, but its offset carries it into year 10000, which readers write in different ways.
    "9999-12-31T23:30:00-01:00",
  ])("rejects the stamp %s", (stamp) => {
    expect(parseCopy(copyOf(body(), { stamp }))).toEqual({
      ok: false,
      reason: "bad_timestamp",
      detail: `not an XEP-0082 DateTime: ${stamp}`,
    });
  });

  it("accepts an original of exactly MAX_STANZA_BYTES and rejects one byte more", () => {
    const overhead = Buffer.byteLength(chat({}, xml("body", {}, "a")).toString(), "utf8") - 1;
    const filler = "a".repeat(MAX_STANZA_BYTES - overhead);
    const fits = chat({}, xml("body", {}, filler));
    const tooBig = chat({}, xml("body", {}, `${filler}a`));
    expect(Buffer.byteLength(fits.toString(), "utf8")).toBe(MAX_STANZA_BYTES);
    expect(parseCopy(copyOf(fits))).toEqual(
      accepted([
        event({ kind: "message", ...ALICE, messageId: "m1", body: filler, raw: fits.toString() }),
      ]),
    );
    expect(parseCopy(copyOf(tooBig))).toEqual({
      ok: false,
      reason: "oversized",
      detail: `original is ${MAX_STANZA_BYTES + 1} bytes, limit ${MAX_STANZA_BYTES}`,
    });
  });

  it("measures size in UTF-8 bytes, not characters", () => {
    // Four-byte emojis: two UTF-16 units each, so half as many characters as bytes.
    const original = chat({}, xml("body", {}, "😀".repeat(MAX_STANZA_BYTES / 4 + 1)));
    const bytes = Buffer.byteLength(original.toString(), "utf8");
    expect(original.toString().length).toBeLessThan(MAX_STANZA_BYTES);
    expect(parseCopy(copyOf(original))).toEqual({
      ok: false,
      reason: "oversized",
      detail: `original is ${bytes} bytes, limit ${MAX_STANZA_BYTES}`,
    });
  });

  it("never throws: anything unexpected becomes malformed", () => {
    const original = body();
    original.attrs.broken = {
      toString() {
        throw new Error("cannot serialize");
      },
    };
    expect(parseCopy(copyOf(original))).toEqual({
      ok: false,
      reason: "malformed",
      detail: "cannot serialize",
    });
  });
});

describe("parseCopy on a copy exactly as ejabberd 23.01 routes it", () => {
  // Captured from mod_syncside on ejabberd 23.01 (via MAM): no type attribute on the copy,
  // <delay/> after the original, xml:lang added to the original.
  const wire = `<message to="observer@localhost" from="localhost" id="tap-HOIL05ASF3-bffc5f5bdc74735c2b7d" xmlns="jabber:client"><archived by="observer@localhost" id="1795682177426341" xmlns="urn:xmpp:mam:tmp"/><stanza-id by="observer@localhost" id="1795682177426341" xmlns="urn:xmpp:sid:0"/><forwarded xmlns="urn:xmpp:forward:0"><message xml:lang="en" to="bob@localhost" from="alice@localhost/663" type="chat" id="t1-on-body" xmlns="jabber:client"><body>hi</body></message><delay stamp="2026-11-26T08:36:17.426325Z" xmlns="urn:xmpp:delay"/></forwarded><tap xmlns="urn:syncside:tap:0" sender-archive-id="1795682177411283"/><store xmlns="urn:xmpp:hints"/><offline xmlns="http://jabber.org/protocol/offline"/></message>`;

  it("reads the copy id, origin, sender archive id, server time and the message", () => {
    const result = parseCopy(parseXml(wire));
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.copy).toMatchObject({
      copyId: "tap-HOIL05ASF3-bffc5f5bdc74735c2b7d",
      origin: "localhost",
      senderArchiveId: "1795682177411283",
      sentAt: new Date("2026-11-26T08:36:17.426Z"),
      ignored: null,
    });
    expect(result.copy.events).toMatchObject([
      {
        kind: "message",
        from: "alice@localhost",
        fromResource: "663",
        to: "bob@localhost",
        messageId: "t1-on-body",
        body: "hi",
      },
    ]);
  });
});

describe("parseCopy on the tap's word about who is a local account", () => {
  it("reads from-local and to-local, and leaves them null when absent", () => {
    const withFlags = (from: string, to: string) =>
      parseXml(
        `<message from="localhost" to="observer@localhost" id="c1"><forwarded xmlns="urn:xmpp:forward:0"><message xmlns="jabber:client" from="alice@localhost/a" to="nobody@localhost" type="chat" id="m"><body>x</body></message><delay xmlns="urn:xmpp:delay" stamp="2026-11-26T08:00:00Z"/></forwarded><tap xmlns="urn:syncside:tap:0" from-local="${from}" to-local="${to}"/></message>`,
      );
    const r = parseCopy(withFlags("true", "false"));
    expect(r.ok && [r.copy.fromLocal, r.copy.toLocal]).toEqual([true, false]);
    const odd = parseCopy(withFlags("yes", ""));
    expect(odd.ok && [odd.copy.fromLocal, odd.copy.toLocal]).toEqual([null, null]);
  });
});
