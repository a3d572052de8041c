import { parse as parseJid } from "@xmpp/jid";
import type { Element } from "@xmpp/xml";
import { prepJidPart } from "../xmpp/jid-prep.js";

/**
 * The largest original stored, in UTF-8 bytes as it is serialised again (about its size on the
 * wire). Larger than any stanza ejabberd takes in with its shipped limits (`max_stanza_size`:
 * 256 KB from clients, 512 KB from other servers), so that every message a recipient can get
 * is stored; the bound only keeps a server configured without a limit from filling the store.
 */
export const MAX_STANZA_BYTES = 1024 * 1024;

/**
 * The longest stanza, origin, target or call id used, in UTF-8 bytes. These ids are index keys
 * in the store, and PostgreSQL refuses an index entry over about 2.7 kB: one longer id failed
 * its whole batch. Clients send ids of UUID size; the API takes message ids up to this length
 * too (read_until). A message keeps no longer id: it is stored under its origin-id if that is
 * short enough, else its copy id. An edit, retraction, reaction, marker or call signal naming a
 * longer id is ignored, since no stored id can match it.
 */
export const MAX_ID_BYTES = 1024;

export type EventKind =
  | "message"
  | "edit"
  | "retract"
  | "reaction"
  | "displayed"
  | "received"
  | "call";

/** The XEP-0353 signals, in the order a call goes through them. */
export const CALL_ACTIONS = [
  "propose",
  "ringing",
  "proceed",
  "accept",
  "reject",
  "retract",
  "finish",
] as const;

export type CallAction = (typeof CALL_ACTIONS)[number];

export interface CallSignal {
  action: CallAction;
  callId: string;
  media: string[];
  reason: string | null;
  migratedTo: string | null;
}

export interface ConversationEvent {
  kind: EventKind;
  from: string;
  fromResource: string | null;
  to: string;
  messageId: string | null;
  originId: string | null;
  targetId: string | null;
  body: string | null;
  reactions: string[] | null;
  marker: "received" | "displayed" | "acknowledged" | null;
  call: CallSignal | null;
  raw: string;
}

export interface ParsedCopy {
  copyId: string;
  /** The copy's sender, a bare server domain: the caller must check it is its own server. */
  origin: string;
  senderArchiveId: string | null;
  /** Whether the server knows the sender/recipient as its own registered account; null when the
   * tap did not say (then the domain decides). */
  fromLocal: boolean | null;
  toLocal: boolean | null;
  sentAt: Date;
  events: ConversationEvent[];
  ignored: string | null;
  /**
   * Set on the server's notice that an account was removed from ejabberd (no events then):
   * ingest erases that account's mirror as of `at`, in order with the copies around it.
   */
  removal?: AccountRemoval;
}

/** An account ejabberd removed (unregister, in-band cancel, admin API), and when. */
export interface AccountRemoval {
  /** the removed bare JID, as ejabberd compares them; always of the notice's own domain */
  jid: string;
  at: Date;
}

export type RejectReason =
  | "not_a_copy"
  | "missing_id"
  | "bad_jid"
  | "bad_timestamp"
  | "oversized"
  | "malformed";

export type ParseResult =
  | { ok: true; copy: ParsedCopy }
  | { ok: false; reason: RejectReason; detail: string };

const NS = {
  forward: "urn:xmpp:forward:0",
  delay: "urn:xmpp:delay",
  tap: "urn:syncside:tap:0",
  carbons: "urn:xmpp:carbons:2",
  sid: "urn:xmpp:sid:0",
  correct: "urn:xmpp:message-correct:0",
  fasten: "urn:xmpp:fasten:0",
  reactions: "urn:xmpp:reactions:0",
  markers: "urn:xmpp:chat-markers:0",
  receipts: "urn:xmpp:receipts",
  jingle: "urn:xmpp:jingle:1",
  chatStates: "http://jabber.org/protocol/chatstates",
} as const;

// A forwarded stanza keeps its stream namespace (XEP-0297); s2s-originated ones may say jabber:server.
const STANZA_NAMESPACES = new Set(["jabber:client", "jabber:server"]);
const MAM_NAMESPACES = new Set(["urn:xmpp:mam:0", "urn:xmpp:mam:1", "urn:xmpp:mam:2"]);
const RETRACT_NAMESPACES = new Set(["urn:xmpp:message-retract:0", "urn:xmpp:message-retract:1"]);
// XEP-0353 0.4–0.5 used :1 before 0.6 went back to :0; clients built on either are in use.
const CALL_NAMESPACES = new Set(["urn:xmpp:jingle-message:0", "urn:xmpp:jingle-message:1"]);
const CALL_ACTION_NAMES = new Set<string>(CALL_ACTIONS);
const IGNORED_TYPES = new Set(["groupchat", "error", "headline"]);
const CHAT_MARKERS = new Set<string>(["received", "displayed", "acknowledged"]);

// RFC 7622 forbids these in a localpart; @xmpp/jid would silently XEP-0106-escape them instead.
const FORBIDDEN_IN_LOCAL = /[\s"&'/:<>@]/u;
const FORBIDDEN_IN_DOMAIN = /[\s"&'/<>@\\]/u;
const MAX_JID_PART_BYTES = 1023;
// XEP-0082 DateTime: the only timestamp form XEP-0203 allows.
const DATETIME =
  /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:Z|([+-])(\d{2}):(\d{2}))$/u;

class Rejection extends Error {
  constructor(
    readonly reason: RejectReason,
    detail: string,
  ) {
    super(detail);
  }
}

interface Address {
  readonly bare: string;
  readonly local: string;
  readonly resource: string | null;
}

type Envelope = Pick<
  ConversationEvent,
  "from" | "fromResource" | "to" | "messageId" | "originId" | "raw"
>;

/** Either the stanza's one meaningful event, or why an element that claimed one was unusable. */
type Outcome = { event: ConversationEvent } | { ignored: string } | null;

export function parseCopy(copy: Element): ParseResult {
  try {
    return { ok: true, copy: readCopy(copy) };
  } catch (error) {
    if (error instanceof Rejection) {
      return { ok: false, reason: error.reason, detail: error.message };
    }
    // One odd stanza must never stop ingest, whatever it trips over.
    const detail = error instanceof Error ? error.message : String(error);
    return { ok: false, reason: "malformed", detail };
  }
}

function readCopy(copy: Element): ParsedCopy {
  if (copy.getName() !== "message") {
    throw new Rejection("not_a_copy", `expected <message>, got <${copy.getName()}>`);
  }
  const removed = copy.getChild("removed", NS.tap);
  if (removed !== undefined) {
    return readRemoval(copy, removed);
  }
  const forwarded = copy.getChild("forwarded", NS.forward);
  const original = forwarded?.getChildElements().find(isStanzaMessage);
  if (forwarded === undefined || original === undefined) {
    throw new Rejection("not_a_copy", "no forwarded <message>");
  }
  const origin = readOrigin(copy);
  const copyId = readCopyId(copy, "copy");
  const sentAt = readStamp(forwarded.getChild("delay", NS.delay));
  const raw = original.toString();
  const size = Buffer.byteLength(raw, "utf8");
  if (size > MAX_STANZA_BYTES) {
    throw new Rejection("oversized", `original is ${size} bytes, limit ${MAX_STANZA_BYTES}`);
  }
  const tap = copy.getChild("tap", NS.tap);
  return {
    copyId,
    origin,
    senderArchiveId: attr(tap, "sender-archive-id"),
    fromLocal: flag(tap, "from-local"),
    toLocal: flag(tap, "to-local"),
    sentAt,
    ...readOriginal(original, raw),
  };
}

/** The id the module gave a copy or notice: the key it is deduplicated by. */
function readCopyId(copy: Element, what: string): string {
  const id = attr(copy, "id");
  if (id === null) throw new Rejection("missing_id", `${what} has no id`);
  // The module's ids are short; a longer one could not be a key of the store (MAX_ID_BYTES).
  if (usableId(id) === null) {
    throw new Rejection("oversized", `${what} id over ${MAX_ID_BYTES} bytes`);
  }
  return id;
}

/**
 * The module's notice that ejabberd removed an account (see mod_syncside's remove_user):
 *
 *   <message from="DOMAIN" id="tap-…"><removed xmlns="urn:syncside:tap:0" jid="u@DOMAIN"
 *     stamp="SERVER-TIME"/><store/><offline/></message>
 *
 * Only a server sends from a bare domain (and the pipeline takes only its own), and a server
 * removes only its own accounts: a notice naming another domain's JID is no notice.
 */
function readRemoval(copy: Element, removed: Element): ParsedCopy {
  if (copy.getChild("forwarded", NS.forward) !== undefined) {
    throw new Rejection("not_a_copy", "a removal notice carries no forwarded message");
  }
  const origin = readOrigin(copy);
  const copyId = readCopyId(copy, "removal notice");
  const jid = attr(removed, "jid");
  const address = jid === null ? null : tryAddress(jid);
  if (address === null || address.local === "" || address.resource !== null) {
    throw new Rejection("bad_jid", `removal names no bare account JID: ${jid ?? "none"}`);
  }
  if (address.bare.slice(address.bare.lastIndexOf("@") + 1) !== origin) {
    throw new Rejection("bad_jid", `${origin} cannot remove an account of another domain`);
  }
  const stamp = attr(removed, "stamp");
  const at = stamp === null ? null : parseDateTime(stamp);
  if (at === null) {
    throw new Rejection("bad_timestamp", `removal notice stamp: ${stamp ?? "none"}`);
  }
  return {
    copyId,
    origin,
    senderArchiveId: null,
    fromLocal: null,
    toLocal: null,
    sentAt: at,
    events: [],
    ignored: null,
    removal: { jid: address.bare, at },
  };
}

function isStanzaMessage(element: Element): boolean {
  return element.getName() === "message" && STANZA_NAMESPACES.has(element.getNS() ?? "");
}

// Anyone can send the observer a stanza shaped like a copy; only a server can send from a bare domain.
function readOrigin(copy: Element): string {
  const from = attr(copy, "from");
  const address = from === null ? null : tryAddress(from);
  if (address === null || address.local !== "" || address.resource !== null) {
    throw new Rejection("not_a_copy", `copy not sent by a server: ${from ?? "no from"}`);
  }
  return address.bare;
}

function readStamp(delay: Element | undefined): Date {
  const stamp = attr(delay, "stamp");
  if (stamp === null) {
    throw new Rejection("bad_timestamp", "forwarded copy has no delay stamp");
  }
  const sentAt = parseDateTime(stamp);
  if (sentAt === null) {
    throw new Rejection("bad_timestamp", `not an XEP-0082 DateTime: ${stamp}`);
  }
  return sentAt;
}

function parseDateTime(stamp: string): Date | null {
  const match = DATETIME.exec(stamp);
  if (match === null) {
    return null;
  }
  const field = (group: number): number => Number(match[group] ?? "0");
  const millis = Number((match[7] ?? "").padEnd(3, "0").slice(0, 3));
  const utc = Date.UTC(field(1), field(2) - 1, field(3), field(4), field(5), field(6), millis);
  const date = new Date(utc);
  // Date.UTC rolls 2026-02-30 over into March and maps years below 100 to 19xx: not real stamps.
  const exact =
    date.getUTCFullYear() === field(1) &&
    date.getUTCMonth() === field(2) - 1 &&
    date.getUTCDate() === field(3) &&
    date.getUTCHours() === field(4) &&
    date.getUTCMinutes() === field(5) &&
    date.getUTCSeconds() === field(6);
  if (!exact || field(9) > 23 || field(10) > 59) {
    return null;
  }
  const offsetMinutes = (match[8] === "-" ? -1 : 1) * (field(9) * 60 + field(10));
  const sentAt = new Date(utc - offsetMinutes * 60_000);
  // An offset can carry 9999-12-31 into year 10000 (or 0001-01-01 into year 0), which
  // toISOString and PostgreSQL's to_char write differently: the API would not agree with itself.
  const year = sentAt.getUTCFullYear();
  return year >= 1 && year <= 9999 ? sentAt : null;
}

function readOriginal(original: Element, raw: string): Pick<ParsedCopy, "events" | "ignored"> {
  const from = readAddress(original, "from");
  const to = readAddress(original, "to");
  const type = attr(original, "type") ?? "normal";
  if (IGNORED_TYPES.has(type)) {
    return ignore(type);
  }
  if (isCarbon(original)) {
    return ignore("carbon");
  }
  if (original.getChildElements().some((child) => isIn(child, "result", MAM_NAMESPACES))) {
    return ignore("mam");
  }
  // A domain-only address (a component such as a gateway or a bot, or the server's own
  // announcements) is a peer like any other: no account of its own, so only the local side of
  // such a chat is stored (the copy says which parties are local).
  if (from.bare === to.bare) {
    return ignore("self");
  }
  const envelope: Envelope = {
    from: from.bare,
    fromResource: from.resource,
    to: to.bare,
    messageId: usableId(attr(original, "id")),
    originId: usableId(attr(original.getChild("origin-id", NS.sid), "id")),
    raw,
  };
  // Order matters: with any of the specific payloads present, a <body> is only a fallback text.
  const primary =
    readCall(original, envelope) ??
    readRetract(original, envelope) ??
    readReactions(original, envelope) ??
    readEdit(original, envelope) ??
    readMessage(original, envelope);
  const markers = readMarkers(original, envelope);
  const events = primary !== null && "event" in primary ? [primary.event] : [];
  events.push(...markers.events);
  if (events.length > 0) {
    return { events, ignored: null };
  }
  if (primary !== null && "ignored" in primary) {
    return ignore(primary.ignored);
  }
  if (markers.ignored !== null) {
    return ignore(markers.ignored);
  }
  const hasChatState = original.getChildElements().some((child) => child.getNS() === NS.chatStates);
  return ignore(hasChatState ? "chat_state" : "no_content");
}

function ignore(reason: string): Pick<ParsedCopy, "events" | "ignored"> {
  return { events: [], ignored: reason };
}

function isCarbon(original: Element): boolean {
  return (
    original.getChild("sent", NS.carbons) !== undefined ||
    original.getChild("received", NS.carbons) !== undefined
  );
}

function readCall(original: Element, envelope: Envelope): Outcome {
  for (const signal of original.getChildElements()) {
    const action = signal.getName();
    if (CALL_NAMESPACES.has(signal.getNS() ?? "") && isCallAction(action)) {
      return readCallSignal(signal, action, envelope);
    }
  }
  return null;
}

function readCallSignal(signal: Element, action: CallAction, envelope: Envelope): Outcome {
  const callId = attr(signal, "id");
  if (callId === null) {
    return { ignored: "bad_call" };
  }
  if (usableId(callId) === null) {
    return { ignored: "oversized_id" };
  }
  const namespace = signal.getNS();
  const call: CallSignal = {
    action,
    callId,
    // The media sit on application descriptions of any namespace (RTP today, others later).
    media: unique(
      signal
        .getChildren("description")
        .map((description) => attr(description, "media"))
        .filter((media) => media !== null),
    ),
    reason: readCallReason(signal, namespace),
    // A session id too long to be stored could never be the session it names: a plain finish.
    migratedTo: usableId(attr(signal.getChild("migrated", namespace), "to")),
  };
  return { event: makeEvent(envelope, { kind: "call", call }) };
}

// XEP-0353 sends a tie-break as <tie-break/> beside a generic <expired/> reason; it says more.
function readCallReason(signal: Element, namespace: string | undefined): string | null {
  if (signal.getChild("tie-break", namespace) !== undefined) {
    return "tie-break";
  }
  const condition = signal
    .getChild("reason", NS.jingle)
    ?.getChildElements()
    .find((child) => child.getNS() === NS.jingle && child.getName() !== "text");
  return condition?.getName() ?? null;
}

function readRetract(original: Element, envelope: Envelope): Outcome {
  const direct = original
    .getChildElements()
    .find((child) => isIn(child, "retract", RETRACT_NAMESPACES));
  // Before XEP-0424 0.4 the retraction was fastened (XEP-0422) and the target id sat on <apply-to>.
  const fastening = original
    .getChildren("apply-to", NS.fasten)
    .find((applyTo) =>
      applyTo.getChildElements().some((child) => isIn(child, "retract", RETRACT_NAMESPACES)),
    );
  if (direct === undefined && fastening === undefined) {
    return null;
  }
  const targetId = attr(direct, "id") ?? attr(fastening, "id");
  if (targetId === null) {
    return { ignored: "bad_retract" };
  }
  if (usableId(targetId) === null) {
    return { ignored: "oversized_id" };
  }
  return { event: makeEvent(envelope, { kind: "retract", targetId }) };
}

function readReactions(original: Element, envelope: Envelope): Outcome {
  const reactions = original.getChild("reactions", NS.reactions);
  if (reactions === undefined) {
    return null;
  }
  const targetId = attr(reactions, "id");
  if (targetId === null) {
    return { ignored: "bad_reaction" };
  }
  if (usableId(targetId) === null) {
    return { ignored: "oversized_id" };
  }
  const emojis = unique(
    reactions
      .getChildren("reaction", NS.reactions)
      .map((reaction) => reaction.getText().trim())
      .filter((emoji) => emoji !== ""),
  );
  return { event: makeEvent(envelope, { kind: "reaction", targetId, reactions: emojis }) };
}

function readEdit(original: Element, envelope: Envelope): Outcome {
  const replace = original.getChild("replace", NS.correct);
  if (replace === undefined) {
    return null;
  }
  const targetId = attr(replace, "id");
  const body = readBody(original);
  if (targetId === null || body === null) {
    return { ignored: "bad_edit" };
  }
  if (usableId(targetId) === null) {
    return { ignored: "oversized_id" };
  }
  return { event: makeEvent(envelope, { kind: "edit", targetId, body }) };
}

function readMessage(original: Element, envelope: Envelope): Outcome {
  const body = readBody(original);
  return body === null ? null : { event: makeEvent(envelope, { kind: "message", body }) };
}

// RFC 6121 allows one <body> per xml:lang; the one without xml:lang is the default text.
function readBody(original: Element): string | null {
  const bodies = original.getChildren("body", original.getNS());
  const body = bodies.find((candidate) => attr(candidate, "xml:lang") === null) ?? bodies[0];
  const text = body?.getText() ?? "";
  return text === "" ? null : text;
}

function readMarkers(
  original: Element,
  envelope: Envelope,
): { events: ConversationEvent[]; ignored: string | null } {
  const events: ConversationEvent[] = [];
  const seen = new Set<string>();
  let ignored: string | null = null;
  for (const child of original.getChildElements()) {
    const name = child.getName();
    const namespace = child.getNS();
    const isChatMarker = namespace === NS.markers && CHAT_MARKERS.has(name);
    const isReceipt = namespace === NS.receipts && name === "received";
    if (!isChatMarker && !isReceipt) {
      continue;
    }
    const targetId = attr(child, "id");
    if (targetId === null) {
      ignored = "bad_marker";
      continue;
    }
    if (usableId(targetId) === null) {
      ignored = "oversized_id";
      continue;
    }
    const marker = name as "received" | "displayed" | "acknowledged";
    // Clients send a XEP-0184 receipt and a XEP-0333 <received/> together; they say the same thing.
    const key = `${marker}\n${targetId}`;
    if (seen.has(key)) {
      continue;
    }
    seen.add(key);
    const kind = marker === "received" ? "received" : "displayed";
    events.push(makeEvent(envelope, { kind, targetId, marker }));
  }
  return { events, ignored };
}

// Every field spelled out, in one order: events then share one shape, and the object spreads
// this replaced were the costliest line of parsing.
function makeEvent(
  envelope: Envelope,
  fields: Pick<ConversationEvent, "kind"> &
    Partial<Pick<ConversationEvent, "targetId" | "body" | "reactions" | "marker" | "call">>,
): ConversationEvent {
  return {
    kind: fields.kind,
    from: envelope.from,
    fromResource: envelope.fromResource,
    to: envelope.to,
    messageId: envelope.messageId,
    originId: envelope.originId,
    targetId: fields.targetId ?? null,
    body: fields.body ?? null,
    reactions: fields.reactions ?? null,
    marker: fields.marker ?? null,
    call: fields.call ?? null,
    raw: envelope.raw,
  };
}

function readAddress(stanza: Element, attribute: "from" | "to"): Address {
  const value = attr(stanza, attribute);
  const address = value === null ? null : tryAddress(value);
  if (address === null) {
    throw new Rejection("bad_jid", `invalid ${attribute}: ${value ?? "missing"}`);
  }
  return address;
}

/**
 * Validated addresses by their text: a few thousand JIDs recur in every copy, and checking one
 * (@xmpp/jid's escaping most of all) was the largest share of parsing. Cleared when full, so
 * odd input cannot grow it without bound.
 */
const addresses = new Map<string, Address | null>();
const MAX_REMEMBERED_ADDRESSES = 10_000;

function tryAddress(value: string): Address | null {
  const known = addresses.get(value);
  if (known !== undefined) return known;
  if (addresses.size >= MAX_REMEMBERED_ADDRESSES) addresses.clear();
  const address = checkAddress(value);
  addresses.set(value, address);
  return address;
}

function checkAddress(value: string): Address | null {
  const slash = value.indexOf("/");
  const resource = slash === -1 ? null : value.slice(slash + 1);
  const bare = slash === -1 ? value : value.slice(0, slash);
  const at = bare.indexOf("@");
  // As ejabberd compares them: one account, one spelling, whichever a client wrote.
  const local = at === -1 ? null : prepJidPart(bare.slice(0, at));
  const domain = prepJidPart(at === -1 ? bare : bare.slice(at + 1));
  const parts = [local, domain, resource].filter((part) => part !== null);
  if (
    parts.some((part) => part === "" || Buffer.byteLength(part, "utf8") > MAX_JID_PART_BYTES) ||
    FORBIDDEN_IN_LOCAL.test(local ?? "") ||
    FORBIDDEN_IN_DOMAIN.test(domain)
  ) {
    return null;
  }
  try {
    const jid = parseJid(local === null ? domain : `${local}@${domain}`);
    return { bare: jid.bare().toString(), local: jid.getLocal(), resource: resource };
  } catch {
    return null;
  }
}

function isCallAction(name: string): name is CallAction {
  return CALL_ACTION_NAMES.has(name);
}

function isIn(element: Element, name: string, namespaces: ReadonlySet<string>): boolean {
  return element.getName() === name && namespaces.has(element.getNS() ?? "");
}

function attr(element: Element | undefined, name: string): string | null {
  const value: unknown = element?.attrs[name];
  return typeof value === "string" && value !== "" ? value : null;
}

/** The id, or null when it is too long to be a key of the store (see MAX_ID_BYTES). */
function usableId(id: string | null): string | null {
  if (id === null || id.length * 3 <= MAX_ID_BYTES) return id;
  return Buffer.byteLength(id, "utf8") <= MAX_ID_BYTES ? id : null;
}

function flag(element: Element | undefined, name: string): boolean | null {
  const value = attr(element, name);
  return value === "true" ? true : value === "false" ? false : null;
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}
