import {
  and,
  asc,
  desc,
  eq,
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
import { compile, type Db, preparedRows, type Tx } from "./db.js";
import { fromJsonRow, jsonRowOf } from "./json-rows.js";
import { calls } from "./schema/calls.js";
import { conversations } from "./schema/conversations.js";
import { events } from "./schema/events.js";
import { messages, type Reactions } from "./schema/messages.js";

export type ConversationRow = typeof conversations.$inferSelect;
export type MessageRow = typeof messages.$inferSelect;
export type EventRow = typeof events.$inferSelect;

/** Either the pool or one transaction: every read here works in both. */
type Reader = Db | Tx;

/**
 * A message as a client sees it: its current state, with timestamps already in the ISO 8601
 * form the API answers with. A sync renders up to 10,000 of these straight from PostgreSQL
 * (`MESSAGE_VIEW`), with no Date made and formatted again per field; single rows come through
 * `messageViewOf`. The two must agree: the sync and conversation tests compare both.
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

/** `to_char` of a timestamptz in exactly the form of JavaScript's Date.toISOString(). */
function isoText(column: SQL): SQL {
  return sql`to_char(${column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
}

/** `MessageView`'s fields, in order, as SQL over the messages row `m`. */
const MESSAGE_VIEW: [keyof MessageView, SQL][] = [
  ["id", sql`m.message_id`],
  ["stanzaId", sql`m.stanza_id`],
  ["direction", sql`m.direction`],
  ["body", sql`case when m.retracted_at is null then m.body end`],
  ["sentAt", isoText(sql`m.sent_at`)],
  ["editedAt", isoText(sql`m.edited_at`)],
  ["retracted", sql`m.retracted_at is not null`],
  ["reactions", sql`m.reactions`],
  ["version", sql`m.seq`],
];

/** One message of the row `m` as a JSON array: keys travel once, in `fromMessageJson`. */
const messageJson = sql`json_build_array(${sql.join(
  MESSAGE_VIEW.map(([, field]) => field),
  sql`, `,
)})`;

function fromMessageJson(json: unknown[]): MessageView {
  const view: Record<string, unknown> = {};
  MESSAGE_VIEW.forEach(([key], i) => {
    view[key] = json[i];
  });
  return view as unknown as MessageView;
}

export interface ConversationView {
  conversation: ConversationRow;
  lastMessage: MessageView | null;
}

export interface SyncedConversation extends ConversationView {
  /** the compacted delta, oldest first by when each message was sent */
  messages: MessageView[];
  truncated: boolean;
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
 * restored or other database).
 */
export async function readSync(db: Db, request: SyncRequest): Promise<SyncSnapshot> {
  const { accountId, since, limit, messages: perConversation, now } = request;
  const base = since?.base ?? 0;
  const [row] = await preparedRows<SyncRow>(db, "sync", syncQuery(since !== null, base > 0), {
    accountId,
    since: since?.seq ?? 0,
    pageSize: since ? limit + 1 : limit,
    base,
    shown: perConversation,
    fetched: perConversation + 1,
    // A placeholder skips the column's encoder, and the drivers take timestamps as text.
    now: now.toISOString(),
  });
  const lastSeq = Number(row?.lastSeq ?? 0);
  if (since && since.seq > lastSeq) return { ok: false, lastSeq };

  const rows = (row?.conversations ?? []).map((c) => ({
    conversation: fromJsonRow(conversations, c.conversation),
    // newest first, one more than asked when there are more
    delta: (c.delta ?? []).map(fromMessageJson),
    /** the newest message when the delta does not start with it */
    last: c.last ? fromMessageJson(c.last) : null,
    calls: (c.calls ?? []).map((k) => fromJsonRow(calls, k)),
  }));
  const hasMore = since !== null && rows.length > limit;
  const page = rows.slice(0, limit);
  const seq = hasMore ? (page.at(-1)?.conversation.version ?? lastSeq) : lastSeq;
  return {
    ok: true,
    lastSeq,
    seq,
    base: hasMore ? base : seq,
    hasMore,
    unreadTotal: row?.unreadTotal ?? 0,
    calls: activeOf((row?.activeCalls ?? []).map((k) => fromJsonRow(calls, k))),
    conversations: page.map((c) => ({
      conversation: c.conversation,
      lastMessage: c.last ?? c.delta[0] ?? null,
      messages: c.delta.slice(0, request.messages).reverse(),
      truncated: c.delta.length > request.messages,
      calls: c.calls,
    })),
  };
}

type JsonRow = unknown[];

interface SyncRow {
  lastSeq: number | string | null;
  unreadTotal: number;
  activeCalls: JsonRow[] | null;
  conversations:
    | {
        conversation: JsonRow;
        last: JsonRow | null;
        delta: JsonRow[] | null;
        calls: JsonRow[] | null;
      }[]
    | null;
}

const syncQueries = new Map<string, Query>();

/**
 * The sync as one SQL statement returning JSON: per conversation of the page (changed since
 * `since` by version, or the most recently active on a first sync), its messages changed since
 * `base` (newest first, one more than shown to tell truncation), its newest message, and its
 * calls changed in the same window — since `base`, or on a first sync since the oldest message
 * shown. Built once per shape; the values are placeholders.
 */
function syncQuery(paged: boolean, hasBase: boolean): Query {
  const key = `${paged} ${hasBase}`;
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
  const changed = hasBase ? sql`and m.seq > ${p("base")}` : sql``;
  const callsAfter = hasBase ? p("base") : sql`d.oldest_shown - 1`;
  // The delta's newest is the newest message when it was created in the window (always, on a
  // first sync); only otherwise is the newest looked up on its own.
  const needsLast = hasBase ? sql`coalesce(d.newest <= ${p("base")}, true)` : sql`false`;
  query = compile(sql`with page as materialized (${page})
    select
      (select last_seq from accounts where id = ${accountId}) as "lastSeq",
      (select coalesce(sum(unread_count), 0)::int from conversations
        where account_id = ${accountId} and not archived) as "unreadTotal",
      (select json_agg(${jsonRowOf(calls, "calls")} order by proposed_at, call_id)
        from calls where ${activeCallCandidates(accountId, p("now"))}) as "activeCalls",
      (select json_agg(json_build_object(
          'conversation', ${jsonRowOf(conversations, "p")},
          'last', l.row, 'delta', d.rows, 'calls', k.rows) order by p.ord)
        from page p
        left join lateral (
          select json_agg(${messageJson} order by m.created_seq desc) as rows,
            max(m.created_seq) as newest,
            min(m.created_seq) filter (where m.rank <= ${p("shown")}) as oldest_shown
          from (
            select m.*, row_number() over (order by m.created_seq desc) as rank from messages m
            where m.account_id = ${accountId} and m.conversation_id = p.id ${changed}
            order by m.created_seq desc limit ${p("fetched")}
          ) m
        ) d on true
        left join lateral (
          select ${messageJson} as row from messages m
          where m.account_id = ${accountId} and m.conversation_id = p.id and ${needsLast}
          order by m.created_seq desc limit 1
        ) l on true
        left join lateral (
          select json_agg(${jsonRowOf(calls, "k")} order by k.proposed_at, k.call_id) as rows
          from calls k
          where k.account_id = ${accountId} and k.conversation_id = p.id and k.seq > ${callsAfter}
        ) k on true
      ) as conversations`);
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
    .select()
    .from(messages)
    .where(and(eq(messages.accountId, accountId), eq(messages.conversationId, conversations.id)))
    .orderBy(desc(messages.createdSeq))
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
    .select()
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

/** History backwards, newest first, strictly before a created_seq. */
export function messagesBefore(
  db: Reader,
  conversation: ConversationRow,
  beforeCreatedSeq: number,
  limit: number,
) {
  return db
    .select()
    .from(messages)
    .where(
      and(
        eq(messages.accountId, conversation.accountId),
        eq(messages.conversationId, conversation.id),
        lt(messages.createdSeq, beforeCreatedSeq),
      ),
    )
    .orderBy(desc(messages.createdSeq))
    .limit(limit);
}

/**
 * A message by the id clients know it by. Both sides may pick the same id; then the newer one
 * is meant, since a client pages back from what it sees last.
 */
export async function findMessage(
  db: Reader,
  conversation: ConversationRow,
  messageId: string,
): Promise<MessageRow | null> {
  const [row] = await db
    .select()
    .from(messages)
    .where(
      and(
        eq(messages.accountId, conversation.accountId),
        eq(messages.conversationId, conversation.id),
        eq(messages.messageId, messageId),
      ),
    )
    .orderBy(desc(messages.createdSeq))
    .limit(1);
  return row ?? null;
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
