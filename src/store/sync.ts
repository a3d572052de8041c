import {
  and,
  asc,
  desc,
  eq,
  getTableColumns,
  gt,
  inArray,
  isNull,
  lt,
  or,
  type Query,
  type SQL,
  sql,
} from "drizzle-orm";
import { activeCallCandidates, activeOf, type CallRow } from "./calls.js";
import { compile, type Db, preparedTextRows, type Tx } from "./db.js";
import { fromJsonRow, jsonRowOf } from "./json-rows.js";
import { storedMessageJsonSql, syncConversationJsonSql } from "./message-json.js";
import { calls } from "./schema/calls.js";
import { conversations } from "./schema/conversations.js";
import { events } from "./schema/events.js";
import { messages, type Reactions } from "./schema/messages.js";

export type ConversationRow = typeof conversations.$inferSelect;
/** A messages row as the routes that render rows here read it: without its stored rendering. */
export type MessageRow = Omit<typeof messages.$inferSelect, "view">;
export type EventRow = typeof events.$inferSelect;

/** Either the pool or one transaction: every read here works in both. */
type Reader = Db | Tx;

/** Every messages column but `view`, which only a sync reads: rows here are rendered in JS. */
const { view: _view, ...MESSAGE_COLUMNS } = getTableColumns(messages);

/**
 * A message as a client sees it: its current state, with timestamps in the ISO 8601 form the
 * API answers with. Routes that show a few rows build it with `messageViewOf`; a sync hands on
 * the JSON text PostgreSQL renders (message-json.ts) instead. The two must agree: the sync and
 * conversation tests compare both.
 */
export interface MessageView {
  id: string;
  stanzaId: string | null;
  direction: "in" | "out";
  /** null once retracted */
  body: string | null;
  sentAt: string;
  editedAt: string | null;
  retracted: boolean;
  reactions: Reactions;
  /** seq of the message's last change */
  version: number;
}

export function messageViewOf(row: MessageRow): MessageView {
  return {
    id: row.messageId,
    stanzaId: row.stanzaId,
    direction: row.direction,
    body: row.retractedAt ? null : row.body,
    sentAt: row.sentAt.toISOString(),
    editedAt: row.editedAt?.toISOString() ?? null,
    retracted: row.retractedAt !== null,
    reactions: row.reactions,
    version: row.seq,
  };
}

export interface ConversationView {
  conversation: ConversationRow;
  lastMessage: MessageView | null;
}

export interface SyncedConversation {
  /** the conversation's version: the seq of its latest event */
  version: number;
  /**
   * The conversation as API JSON (UTF-8, see syncConversationJsonSql) up to its calls: its
   * fields, its newest message and its compacted delta: the newest as sent, in the order
   * they were sent.
   */
  json: Buffer;
  /** calls of this conversation changed in the same window, oldest offer first */
  calls: CallRow[];
}

export interface SyncRequest {
  accountId: number;
  /** null for a first sync */
  since: { seq: number; base: number } | null;
  limit: number;
  messages: number;
  now: Date;
}

export type SyncSnapshot =
  | { ok: false; lastSeq: number }
  | {
      ok: true;
      /** the account synced */
      accountId: number;
      lastSeq: number;
      /** where the next sync continues: last_seq, or the last returned version when paged */
      seq: number;
      /** the `since` that message deltas are computed from (kept across pages) */
      base: number;
      hasMore: boolean;
      unreadTotal: number;
      calls: CallRow[];
      conversations: SyncedConversation[];
    };

/**
 * Everything one sync answers, in one statement: one snapshot, so last_seq, the conversations,
 * their deltas and the calls agree with each other even while ingest commits, and one round trip
 * to the database. `ok: false` when `since` lies beyond the account's last_seq (a position from a
 * restored or other database), or before its last erase. Messages come back as the JSON text the API answers with, stored
 * by ingest, and are handed on without being parsed.
 */
export async function readSync(db: Db, request: SyncRequest): Promise<SyncSnapshot> {
  const { accountId, since, limit, messages: perConversation, now } = request;
  const base = since?.base ?? 0;
  const rows = await preparedTextRows(db, syncQuery(since !== null), {
    accountId,
    since: since?.seq ?? 0,
    pageSize: since ? limit + 1 : limit,
    base,
    shown: perConversation,
    fetched: perConversation + 1,
    // A placeholder skips the column's encoder, and the drivers take timestamps as text.
    now: now.toISOString(),
  });
  // The first row carries the account-wide figures; every row is one conversation of the page.
  const head = rows[0] ?? [];
  const lastSeq = Number(text(head[Column.lastSeq]) ?? 0);
  const erasedSeq = Number(text(head[Column.erasedSeq]) ?? 0);
  if (since && (since.seq > lastSeq || since.seq < erasedSeq)) return { ok: false, lastSeq };

  const page = rows.filter((r) => r[Column.conversation] !== null);
  const hasMore = since !== null && page.length > limit;
  const shown = page.slice(0, limit).map(
    (r): SyncedConversation => ({
      version: Number(text(r[Column.version])),
      json: r[Column.conversation] as Buffer,
      calls: r[Column.calls] ? callsOf(r[Column.calls]) : [],
    }),
  );
  const seq = hasMore ? (shown.at(-1)?.version ?? lastSeq) : lastSeq;
  return {
    ok: true,
    accountId,
    lastSeq,
    seq,
    base: hasMore ? base : seq,
    hasMore,
    unreadTotal: Number(text(head[Column.unreadTotal]) ?? 0),
    calls: activeOf(head[Column.activeCalls] ? callsOf(head[Column.activeCalls]) : []),
    conversations: shown,
  };
}

type JsonRow = unknown[];

/** The sync statement's columns, all text, in order. */
enum Column {
  lastSeq,
  unreadTotal,
  activeCalls,
  /** null on the one row of a sync with no conversation */
  version,
  /** the conversation's JSON up to its calls */
  conversation,
  /** null when no call of the conversation changed */
  calls,
  /** on the first row: the seq of the account's last erase, before which positions expired */
  erasedSeq,
}

function text(value: Buffer | null | undefined): string | null {
  return value ? value.toString("utf8") : null;
}

function callsOf(value: Buffer): CallRow[] {
  return (JSON.parse(value.toString("utf8")) as JsonRow[]).map((k) => fromJsonRow(calls, k));
}

const syncQueries = new Map<string, Query>();

/**
 * The sync as one SQL statement: one row per conversation of the page (changed since `since` by
 * version, or the most recently active on a first sync) with its messages changed since `base`
 * (the newest `shown` of them, and whether there were more), its newest message, and its calls
 * changed in the same window: since `base`; on a first sync all of them, or those since the
 * oldest message shown when its messages were cut. A position's base may be 0 (taken before the
 * account had any event): that is a sync since the start, not a first sync.
 * The account-wide figures come on the first row; with no conversation there is just that row.
 * Built once per shape; the values are placeholders.
 */
function syncQuery(paged: boolean): Query {
  const key = String(paged);
  let query = syncQueries.get(key);
  if (query) return query;
  const p = (name: string) => sql.placeholder(name);
  const accountId = p("accountId");
  const page = paged
    ? sql`select conversations.*, row_number() over (order by version) as ord
        from conversations where account_id = ${accountId} and version > ${p("since")}
        order by version limit ${p("pageSize")}`
    : sql`select conversations.*, row_number() over (order by ${ACTIVITY_ORDER}) as ord
        from conversations where account_id = ${accountId}
        order by ${ACTIVITY_ORDER} limit ${p("pageSize")}`;
  const changed = paged ? sql`and m.seq > ${p("base")}` : sql``;
  // A first sync shows a conversation's latest calls, as many as messages, not its whole past:
  // by when they began, as messages go by when they were sent, and none older than the oldest
  // message shown when the messages were cut.
  const callAt = sql`coalesce(k.proposed_at, k.updated_at)`;
  const callsCap = paged ? sql`` : sql`order by ${callAt} desc, k.seq desc limit ${p("shown")}`;
  const callsWindow = paged
    ? sql`k.seq > ${p("base")}`
    : sql`(not d.truncated or ${callAt} >= d.oldest_shown_at)`;
  // Messages go by when they were sent, then by when they were written. The delta's newest is
  // the conversation's newest unless a message sent later is stored, or one sent at the same
  // time and written later: that one was written before the window, so the delta's newest was
  // too. Only then is the newest looked up on its own; never on a first sync, which reads all.
  const needsLast = paged
    ? sql`coalesce(d.newest_sent_at < p.last_message_at or d.newest_created <= ${p("base")}, true)`
    : sql`false`;
  const first = sql`coalesce(p.ord, 1) = 1`;
  query = compile(sql`with page as materialized (${page})
    select
      case when ${first} then (select last_seq from accounts where id = ${accountId})::text
        end as "lastSeq",
      case when ${first} then (select coalesce(sum(unread_count), 0) from conversations
        where account_id = ${accountId} and not archived)::text end as "unreadTotal",
      case when ${first} then (select json_agg(${jsonRowOf(calls, "calls")}
        order by proposed_at, call_id) from calls where ${activeCallCandidates(accountId, p("now"))})::text
        end as "activeCalls",
      p.version::text as version,
      ${sql.raw(
        syncConversationJsonSql({
          conversation: "p",
          lastMessage: "coalesce(l.view, d.newest_view)",
          messages: "d.messages",
          truncated: "d.truncated",
        }),
      )} as conversation,
      k.rows::text as calls,
      case when ${first} then (select erased_seq from accounts where id = ${accountId})::text
        end as "erasedSeq"
    from (select 1) as one
    left join (page p
      left join lateral (
        select
          '[' || coalesce(string_agg(m.view, ',' order by m.sent_at, m.created_seq)
            filter (where m.rank <= ${p("shown")}), '') || ']' as messages,
          count(*) > ${p("shown")} as truncated,
          min(m.view) filter (where m.rank = 1) as newest_view,
          min(m.sent_at) filter (where m.rank = 1) as newest_sent_at,
          min(m.created_seq) filter (where m.rank = 1) as newest_created,
          min(m.sent_at) filter (where m.rank <= ${p("shown")}) as oldest_shown_at
        from (
          select ${sql.raw(storedMessageJsonSql("m"))} as view, m.created_seq, m.sent_at,
            row_number() over (order by m.sent_at desc, m.created_seq desc) as rank
          from messages m
          where m.account_id = ${accountId} and m.conversation_id = p.id ${changed}
          order by m.sent_at desc, m.created_seq desc limit ${p("fetched")}
        ) m
      ) d on true
      left join lateral (
        select ${sql.raw(storedMessageJsonSql("m"))} as view from messages m
        where m.account_id = ${accountId} and m.conversation_id = p.id and ${needsLast}
        order by m.sent_at desc, m.created_seq desc limit 1
      ) l on true
      left join lateral (
        select json_agg(${jsonRowOf(calls, "k")} order by k.proposed_at, k.call_id) as rows
        from (select * from calls k
          where k.account_id = ${accountId} and k.conversation_id = p.id and ${callsWindow}
          ${callsCap}) k
      ) k on true
    ) on true
    order by p.ord`);
  syncQueries.set(key, query);
  return query;
}

/** The chat-list sort key: most recent message first, conversations without one last. */
export interface ActivityKey {
  lastMessageAt: Date | null;
  id: number;
}

/**
 * Most recently active first (last message time, newest first; no message yet last; then id).
 * Shared by the first sync and the chat list, so both show the same order.
 */
export function recentConversations(
  db: Reader,
  accountId: number,
  after: ActivityKey | null,
  limit: number,
) {
  return db
    .select()
    .from(conversations)
    .where(and(eq(conversations.accountId, accountId), after ? afterActivity(after) : undefined))
    .orderBy(ACTIVITY_ORDER)
    .limit(limit);
}

/** Most recent message first, conversations without one last, then newest id. */
const ACTIVITY_ORDER = sql`${conversations.lastMessageAt} desc nulls last, ${conversations.id} desc`;

function afterActivity(key: ActivityKey): SQL | undefined {
  if (key.lastMessageAt === null) {
    return and(isNull(conversations.lastMessageAt), lt(conversations.id, key.id));
  }
  return or(
    lt(conversations.lastMessageAt, key.lastMessageAt),
    and(eq(conversations.lastMessageAt, key.lastMessageAt), lt(conversations.id, key.id)),
    isNull(conversations.lastMessageAt),
  );
}

const lastOf = (row: MessageRow | undefined) => (row ? messageViewOf(row) : null);

/** Conversations with their newest message, for the chat list and the single-conversation view. */
export async function withLastMessages(
  db: Reader,
  accountId: number,
  rows: ConversationRow[],
): Promise<ConversationView[]> {
  if (rows.length === 0) return [];
  const newest = db
    .select(MESSAGE_COLUMNS)
    .from(messages)
    .where(and(eq(messages.accountId, accountId), eq(messages.conversationId, conversations.id)))
    .orderBy(...NEWEST_FIRST)
    .limit(1)
    .as("m");
  const latest = await db
    .select({ message: newest._.selectedFields })
    .from(conversations)
    .crossJoinLateral(newest)
    .where(
      and(
        eq(conversations.accountId, accountId),
        inArray(
          conversations.id,
          rows.map((r) => r.id),
        ),
      ),
    );
  const byConversation = new Map(latest.map((r) => [r.message.conversationId, r.message]));
  return rows.map((conversation) => ({
    conversation,
    lastMessage: lastOf(byConversation.get(conversation.id)),
  }));
}

export async function findConversation(
  db: Reader,
  accountId: number,
  peer: string,
): Promise<ConversationRow | null> {
  const [row] = await db
    .select()
    .from(conversations)
    .where(and(eq(conversations.accountId, accountId), eq(conversations.peerJid, peer)));
  return row ?? null;
}

/** One conversation's compacted delta, by last change ascending: resumable with the last seq. */
export function messagesChangedAfter(
  db: Reader,
  conversation: ConversationRow,
  afterSeq: number,
  limit: number,
) {
  return db
    .select(MESSAGE_COLUMNS)
    .from(messages)
    .where(
      and(
        eq(messages.accountId, conversation.accountId),
        eq(messages.conversationId, conversation.id),
        gt(messages.seq, afterSeq),
      ),
    )
    .orderBy(asc(messages.seq))
    .limit(limit);
}

/** Where a message stands in its conversation: by when it was sent, then when it was written. */
export interface MessagePlace {
  sentAt: Date;
  createdSeq: number;
}

/** Messages as a conversation shows them, newest first. */
const NEWEST_FIRST = [desc(messages.sentAt), desc(messages.createdSeq)] as const;

/** History backwards, newest first, strictly before a message's place (or from the newest). */
export function messagesBefore(
  db: Reader,
  conversation: ConversationRow,
  before: MessagePlace | null,
  limit: number,
) {
  return db
    .select(MESSAGE_COLUMNS)
    .from(messages)
    .where(
      and(
        eq(messages.accountId, conversation.accountId),
        eq(messages.conversationId, conversation.id),
        before
          ? sql`(${messages.sentAt}, ${messages.createdSeq}) <
              (${before.sentAt.toISOString()}::timestamptz, ${before.createdSeq})`
          : undefined,
      ),
    )
    .orderBy(...NEWEST_FIRST)
    .limit(limit);
}

/**
 * A message by the id clients know it by. Both sides may pick the same id; then the newer one
 * (as the conversation shows them) is meant, since a client pages back from what it sees last.
 */
export async function findMessage(
  db: Reader,
  conversation: ConversationRow,
  messageId: string,
): Promise<MessageRow | null> {
  const [row] = await messageByIdQuery(db, conversation, messageId);
  return row ?? null;
}

/**
 * findMessage's statement. Naming both directions makes it two probes of messages_key, whose
 * third column is the direction: left out, PostgreSQL reads the conversation's whole range of
 * the index to find the id, O(conversation length) on every `before` page and read_until.
 */
export function messageByIdQuery(db: Reader, conversation: ConversationRow, messageId: string) {
  return db
    .select(MESSAGE_COLUMNS)
    .from(messages)
    .where(
      and(
        eq(messages.accountId, conversation.accountId),
        eq(messages.conversationId, conversation.id),
        inArray(messages.direction, ["in", "out"]),
        eq(messages.messageId, messageId),
      ),
    )
    .orderBy(...NEWEST_FIRST)
    .limit(1);
}

/** The raw event log of one conversation, in seq order. */
export function eventsAfter(
  db: Reader,
  conversation: ConversationRow,
  afterSeq: number,
  limit: number,
) {
  return db
    .select()
    .from(events)
    .where(
      and(
        eq(events.accountId, conversation.accountId),
        eq(events.conversationId, conversation.id),
        gt(events.seq, afterSeq),
      ),
    )
    .orderBy(asc(events.seq))
    .limit(limit);
}
