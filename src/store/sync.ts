import { and, asc, desc, eq, gt, inArray, isNull, lt, not, or, type SQL, sql } from "drizzle-orm";
import { activeCalls, type CallRow } from "./calls.js";
import type { Db, Tx } from "./db.js";
import { accounts } from "./schema/accounts.js";
import { calls } from "./schema/calls.js";
import { conversations } from "./schema/conversations.js";
import { events } from "./schema/events.js";
import { messages } from "./schema/messages.js";

export type ConversationRow = typeof conversations.$inferSelect;
export type MessageRow = typeof messages.$inferSelect;
export type EventRow = typeof events.$inferSelect;

/** Either the pool or one transaction: every read here works in both. */
type Reader = Db | Tx;

export interface ConversationView {
  conversation: ConversationRow;
  lastMessage: MessageRow | null;
}

export interface SyncedConversation extends ConversationView {
  /** the compacted delta, oldest first by when each message was sent */
  messages: MessageRow[];
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
 * Everything one sync answers, read in one repeatable-read snapshot so that last_seq, the
 * conversations and their deltas agree with each other even while ingest commits. `ok: false`
 * when `since` lies beyond the account's last_seq (a position from a restored or other database).
 */
export async function readSync(db: Db, request: SyncRequest): Promise<SyncSnapshot> {
  return db.transaction(
    async (tx) => {
      const lastSeq = await accountLastSeq(tx, request.accountId);
      const since = request.since;
      if (since && since.seq > lastSeq) return { ok: false, lastSeq };

      const calls = await activeCalls(tx as unknown as Db, request.accountId, request.now);
      const unreadTotal = await sumUnread(tx, request.accountId);
      const rows = since
        ? await changedConversations(tx, request.accountId, since.seq, request.limit + 1)
        : await recentConversations(tx, request.accountId, null, request.limit);
      const hasMore = rows.length > request.limit;
      const page = rows.slice(0, request.limit);
      const base = since?.base ?? 0;
      const seq = hasMore ? (page.at(-1)?.version ?? lastSeq) : lastSeq;
      return {
        ok: true,
        lastSeq,
        seq,
        base: hasMore ? base : seq,
        hasMore,
        unreadTotal,
        calls,
        conversations: await withDeltas(tx, request.accountId, page, base, request.messages),
      };
    },
    { isolationLevel: "repeatable read", accessMode: "read only" },
  );
}

async function accountLastSeq(db: Reader, accountId: number): Promise<number> {
  const [row] = await db
    .select({ lastSeq: accounts.lastSeq })
    .from(accounts)
    .where(eq(accounts.id, accountId));
  return row?.lastSeq ?? 0;
}

/** The app badge: archived chats are out of sight, so they do not count. */
async function sumUnread(db: Reader, accountId: number): Promise<number> {
  const [row] = await db
    .select({
      // sum() of an integer is a bigint, which drivers return as text.
      total: sql<number>`coalesce(sum(${conversations.unreadCount}), 0)::int`.mapWith(Number),
    })
    .from(conversations)
    .where(and(eq(conversations.accountId, accountId), not(conversations.archived)));
  return row?.total ?? 0;
}

function changedConversations(db: Reader, accountId: number, since: number, limit: number) {
  return db
    .select()
    .from(conversations)
    .where(and(eq(conversations.accountId, accountId), gt(conversations.version, since)))
    .orderBy(asc(conversations.version))
    .limit(limit);
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
    .orderBy(sql`${conversations.lastMessageAt} desc nulls last`, desc(conversations.id))
    .limit(limit);
}

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

/**
 * Per conversation, its messages changed since `base` (newest `limit`, returned oldest first)
 * and its newest message, in one lateral query plus one more only for conversations whose newest
 * message is older than `base` and unchanged.
 */
async function withDeltas(
  db: Reader,
  accountId: number,
  page: ConversationRow[],
  base: number,
  limit: number,
): Promise<SyncedConversation[]> {
  if (page.length === 0) return [];
  const ids = page.map((c) => c.id);
  const delta = groupByConversation(await newestMessages(db, accountId, ids, base, limit + 1));
  // A message created after `base` is in the delta, so the delta's newest is the newest overall.
  const unsettled = ids.filter((id) => {
    const newest = delta.get(id)?.[0];
    return base > 0 && (!newest || newest.createdSeq <= base);
  });
  const latest = groupByConversation(await newestMessages(db, accountId, unsettled, 0, 1));
  const shown = page.map((conversation) => {
    const changed = delta.get(conversation.id) ?? [];
    const newest = changed[0];
    const lastMessage =
      newest && (base === 0 || newest.createdSeq > base)
        ? newest
        : (latest.get(conversation.id)?.[0] ?? null);
    return {
      conversation,
      lastMessage,
      messages: changed.slice(0, limit).reverse(),
      truncated: changed.length > limit,
    };
  });
  // A first sync shows calls from the oldest message it shows on; later syncs what changed.
  const after = new Map<number, number>();
  for (const c of shown) {
    const oldestShown = c.messages[0]?.createdSeq;
    if (base > 0) after.set(c.conversation.id, base);
    else if (oldestShown !== undefined) after.set(c.conversation.id, oldestShown - 1);
  }
  const callsByConversation = await callsChanged(db, accountId, after);
  return shown.map((c) => ({ ...c, calls: callsByConversation.get(c.conversation.id) ?? [] }));
}

/** Per conversation (id → seq), its calls whose last change is after that seq. */
async function callsChanged(
  db: Reader,
  accountId: number,
  after: Map<number, number>,
): Promise<Map<number, CallRow[]>> {
  const result = new Map<number, CallRow[]>();
  if (after.size === 0) return result;
  const rows = await db
    .select()
    .from(calls)
    .where(
      and(
        eq(calls.accountId, accountId),
        inArray(calls.conversationId, [...after.keys()]),
        gt(calls.seq, Math.min(...after.values())),
      ),
    )
    .orderBy(asc(calls.proposedAt), asc(calls.callId));
  for (const row of rows) {
    if (row.seq <= (after.get(row.conversationId) ?? row.seq)) continue;
    result.set(row.conversationId, [...(result.get(row.conversationId) ?? []), row]);
  }
  return result;
}

/** Each conversation's newest newest-first messages whose last change is after `afterSeq`. */
async function newestMessages(
  db: Reader,
  accountId: number,
  conversationIds: number[],
  afterSeq: number,
  limit: number,
): Promise<MessageRow[]> {
  if (conversationIds.length === 0) return [];
  const perConversation = db
    .select()
    .from(messages)
    .where(
      and(
        eq(messages.accountId, accountId),
        eq(messages.conversationId, conversations.id),
        afterSeq > 0 ? gt(messages.seq, afterSeq) : undefined,
      ),
    )
    .orderBy(desc(messages.createdSeq))
    .limit(limit)
    .as("m");
  const rows = await db
    .select({ message: perConversation._.selectedFields })
    .from(conversations)
    .crossJoinLateral(perConversation)
    .where(and(eq(conversations.accountId, accountId), inArray(conversations.id, conversationIds)))
    .orderBy(asc(perConversation.conversationId), desc(perConversation.createdSeq));
  return rows.map((r) => r.message);
}

function groupByConversation(rows: MessageRow[]): Map<number, MessageRow[]> {
  const groups = new Map<number, MessageRow[]>();
  for (const row of rows) {
    const list = groups.get(row.conversationId) ?? [];
    list.push(row);
    groups.set(row.conversationId, list);
  }
  return groups;
}

/** Conversations with their newest message, for the chat list and the single-conversation view. */
export async function withLastMessages(
  db: Reader,
  accountId: number,
  rows: ConversationRow[],
): Promise<ConversationView[]> {
  const latest = groupByConversation(
    await newestMessages(
      db,
      accountId,
      rows.map((r) => r.id),
      0,
      1,
    ),
  );
  return rows.map((conversation) => ({
    conversation,
    lastMessage: latest.get(conversation.id)?.[0] ?? null,
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
