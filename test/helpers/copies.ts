import { randomUUID } from "node:crypto";
import xml, { type Element } from "@xmpp/xml";
import type { CallSignal, ConversationEvent, ParsedCopy } from "../../src/ingest/parse.js";

let clock = Date.parse("2026-11-26T08:00:00Z");

/** Strictly increasing server times, one second apart, so ordering in tests is explicit. */
export function nextTime(): Date {
  clock += 1000;
  return new Date(clock);
}

type EventSpec = Partial<ConversationEvent> & Pick<ConversationEvent, "kind" | "from" | "to">;

/** A parsed copy as parse.ts would produce it, for store tests that skip XML. */
export function copyOf(spec: EventSpec, extra: Partial<ParsedCopy> = {}): ParsedCopy {
  const event: ConversationEvent = {
    fromResource: "phone",
    messageId: null,
    originId: null,
    targetId: null,
    body: null,
    reactions: null,
    marker: null,
    call: null,
    raw: "<message/>",
    ...spec,
  };
  return {
    copyId: randomUUID(),
    origin: "example.org",
    senderArchiveId: null,
    fromLocal: null,
    toLocal: null,
    sentAt: nextTime(),
    events: [event],
    ignored: null,
    ...extra,
  };
}

export const msg = (from: string, to: string, id: string, body: string) =>
  copyOf({ kind: "message", from, to, messageId: id, body });

export const edit = (from: string, to: string, target: string, body: string) =>
  copyOf({ kind: "edit", from, to, messageId: randomUUID(), targetId: target, body });

export const retract = (from: string, to: string, target: string) =>
  copyOf({ kind: "retract", from, to, messageId: randomUUID(), targetId: target });

export const react = (from: string, to: string, target: string, reactions: string[]) =>
  copyOf({ kind: "reaction", from, to, messageId: randomUUID(), targetId: target, reactions });

export const displayed = (from: string, to: string, target: string) =>
  copyOf({ kind: "displayed", from, to, targetId: target, marker: "displayed" });

export function callSignal(
  from: string,
  to: string,
  signal: Partial<CallSignal> & Pick<CallSignal, "action" | "callId">,
  options: { resource?: string; sentAt?: Date } = {},
): ParsedCopy {
  return copyOf(
    {
      kind: "call",
      from,
      to,
      fromResource: options.resource ?? "phone",
      call: { media: [], reason: null, migratedTo: null, ...signal },
    },
    options.sentAt ? { sentAt: options.sentAt } : {},
  );
}

/**
 * A copy as the observer receives it (XML, before parsing): a chat message from `from` to `to`
 * forwarded by the server `example.org`, for tests that run the whole ingest pipeline.
 */
export function wireCopy(o: {
  from: string;
  to: string;
  id: string;
  body: string;
  copyId?: string;
  stamp?: string;
}): Element {
  return xml(
    "message",
    { from: "example.org", to: "observer@example.org", id: o.copyId ?? randomUUID() },
    xml(
      "forwarded",
      { xmlns: "urn:xmpp:forward:0" },
      xml("delay", { xmlns: "urn:xmpp:delay", stamp: o.stamp ?? nextTime().toISOString() }),
      xml(
        "message",
        { xmlns: "jabber:client", from: `${o.from}/phone`, to: o.to, type: "chat", id: o.id },
        xml("body", {}, o.body),
      ),
    ),
  );
}
