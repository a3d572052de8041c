import xml, { type Element } from "@xmpp/xml";
import { describe, expect, it } from "vitest";
import { parseCopy } from "../../src/ingest/parse.js";

const STAMP = "2026-11-26T08:00:00.123456Z";

/** The notice mod_syncside sends the observer when ejabberd removes an account. */
function notice(
  o: { from?: string | null; id?: string | null; jid?: string | null; stamp?: string | null } = {},
  ...extra: Element[]
): Element {
  const attrs: Record<string, string> = { xmlns: "urn:syncside:tap:0" };
  const jid = o.jid === undefined ? "Alice@example.org" : o.jid;
  const stamp = o.stamp === undefined ? STAMP : o.stamp;
  if (jid !== null) attrs.jid = jid;
  if (stamp !== null) attrs.stamp = stamp;
  const message: Record<string, string> = { to: "observer@example.org" };
  const from = o.from === undefined ? "example.org" : o.from;
  const id = o.id === undefined ? "tap-notice-1" : o.id;
  if (from !== null) message.from = from;
  if (id !== null) message.id = id;
  return xml(
    "message",
    message,
    xml("removed", attrs),
    xml("store", { xmlns: "urn:xmpp:hints" }),
    xml("offline", { xmlns: "http://jabber.org/protocol/offline" }),
    ...extra,
  );
}

describe("parse: the server's notice that an account was removed", () => {
  it("names the removed bare JID (as ejabberd compares it) and when, with no events", () => {
    expect(parseCopy(notice())).toEqual({
      ok: true,
      copy: {
        copyId: "tap-notice-1",
        origin: "example.org",
        senderArchiveId: null,
        fromLocal: null,
        toLocal: null,
        sentAt: new Date("2026-11-26T08:00:00.123Z"),
        events: [],
        ignored: null,
        removal: { jid: "alice@example.org", at: new Date("2026-11-26T08:00:00.123Z") },
      },
    });
  });

  it("gives its origin for the pipeline's trust check, as for every copy", () => {
    // A server of another domain may send a well-formed notice; the pipeline takes only its own.
    const parsed = parseCopy(notice({ from: "evil.example", jid: "alice@evil.example" }));
    expect(parsed.ok && parsed.copy.origin).toBe("evil.example");
  });

  it.each([
    ["a user", { from: "mallory@example.org" }, "not_a_copy"],
    ["a user's resource", { from: "mallory@example.org/phone" }, "not_a_copy"],
    ["a domain's resource", { from: "example.org/bot" }, "not_a_copy"],
    ["nobody", { from: null }, "not_a_copy"],
  ] as const)(
    "is refused when sent by %s: only a server sends from a bare domain",
    (_, o, reason) => {
      expect(parseCopy(notice(o))).toMatchObject({ ok: false, reason });
    },
  );

  it.each([
    ["another domain's account", { jid: "alice@other.org" }, "bad_jid"],
    ["the domain itself", { jid: "example.org" }, "bad_jid"],
    ["a full JID", { jid: "alice@example.org/phone" }, "bad_jid"],
    ["no JID", { jid: null }, "bad_jid"],
    ["a malformed JID", { jid: "al ice@example.org" }, "bad_jid"],
    ["no stamp", { stamp: null }, "bad_timestamp"],
    ["a stamp that is no XEP-0082 DateTime", { stamp: "yesterday" }, "bad_timestamp"],
    ["no id", { id: null }, "missing_id"],
    ["an id too long to store", { id: "x".repeat(2000) }, "oversized"],
  ] as const)("is refused when it names %s", (_, o, reason) => {
    expect(parseCopy(notice(o))).toMatchObject({ ok: false, reason });
  });

  it("is refused when it also forwards a message: a notice is nothing else", () => {
    const forwarded = xml(
      "forwarded",
      { xmlns: "urn:xmpp:forward:0" },
      xml("delay", { xmlns: "urn:xmpp:delay", stamp: STAMP }),
      xml(
        "message",
        { xmlns: "jabber:client", from: "bob@example.org", to: "alice@example.org" },
        xml("body", {}, "hi"),
      ),
    );
    expect(parseCopy(notice({}, forwarded))).toMatchObject({ ok: false, reason: "not_a_copy" });
  });

  it("is no notice inside a forwarded original: a user cannot remove an account by sending one", () => {
    const original = xml(
      "message",
      { xmlns: "jabber:client", from: "mallory@example.org/x", to: "bob@example.org", id: "m1" },
      xml("removed", { xmlns: "urn:syncside:tap:0", jid: "bob@example.org", stamp: STAMP }),
      xml("body", {}, "hi"),
    );
    const copy = xml(
      "message",
      { from: "example.org", to: "observer@example.org", id: "tap-2" },
      xml(
        "forwarded",
        { xmlns: "urn:xmpp:forward:0" },
        xml("delay", { xmlns: "urn:xmpp:delay", stamp: STAMP }),
        original,
      ),
    );
    const parsed = parseCopy(copy);
    expect(parsed.ok && parsed.copy.removal).toBeUndefined();
    expect(parsed.ok && parsed.copy.events.map((e) => e.kind)).toEqual(["message"]);
  });
});
