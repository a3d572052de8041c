import { and, eq, inArray, sql } from "drizzle-orm";
import type { ConversationEvent, ParsedCopy } from "../ingest/parse.js";
import { applyCallSignals, type CallUpdate } from "./calls.js";
import { type Db, queryRows, type Tx } from "./db.js";
import { accounts } from "./schema/accounts.js";
import { checkpoints } from "./schema/checkpoints.js";
import { conversations } from "./schema/conversations.js";
import { type EventKindName, events } from "./schema/events.js";
import { messages, type Reactions } from "./schema/messages.js";

/** The channel every committed change is announced on; the payload lists account ids. */
export const CHANGES_CHANNEL = "syncside_changes";

type Direction = "in" | "out";
type EventRow = typeof events.$inferInsert;
type ConversationRow = typeof conversations.$inferSelect;
type MessageRow = typeof messages.$inferInsert;

export interface BatchInput {
  copies: ParsedCopy[];
  /** Where ingest has read up to once this batch commits. */
  checkpoint?: { source: string; position: string };
}

export interface BatchResult {
  /** events written (a copy with both sides local writes two) */
  written: number;
  /** events skipped because their dedupe key was already stored (replays) */
  duplicates: number;
  /** events with no local account on either side */
  foreign: number;
  accountIds: number[];
  byKind: Partial<Record<EventKindName, number>>;
}

export interface WriteOptions {
  /** Whether a bare JID is an account of this server (its domain is one of ours). */
  isLocal: (bareJid: string) => boolean;
  callRingTimeoutMs: number;
  /** an accepted call without `finish` ends after this (XEP-0353 gives no upper bound) */
  callMaxDurationMs?: number;
}

/** One event as one account sees it: alice's `out` and bob's `in` are two sides of one stanza. */
interface Side {
  account: string;
  peer: string;
  direction: Direction;
  event: ConversationEvent;
  copy: ParsedCopy;
  dedupeKey: string;
}

function sidesOf(copy: ParsedCopy, isLocal: (jid: string) => boolean): Side[] {
  const sides: Side[] = [];
  copy.events.forEach((event, index) => {
    const dedupeKey = `copy:${copy.copyId}:${index}`;
    // The server's word (registered account or not) beats a guess from the domain.
    if (copy.fromLocal ?? isLocal(event.from)) {
      sides.push({ account: event.from, peer: event.to, direction: "out", event, copy, dedupeKey });
    }
    if (copy.toLocal ?? isLocal(event.to)) {
      sides.push({ account: event.to, peer: event.from, direction: "in", event, copy, dedupeKey });
    }
  });
  return sides;
}

const MODIFIER_KINDS = ["edit", "retract", "reaction"] as const;

/** The id a client uses for a message: its stanza id, else its origin-id, else the copy's. */
function messageKeyOf(side: Side): string {
  return side.event.messageId ?? side.event.originId ?? `copy:${side.copy.copyId}`;
}

interface LockedAccount {
  id: number;
  jid: string;
  lastSeq: number;
}

/**
 * Creates missing accounts and locks every account row of the batch, in id order so that two
 * writers (ingest and a settings change from the API) can never deadlock. Sequence numbers are
 * assigned under these locks, which is what keeps each account's seq gap-free in commit order.
 */
export async function lockAccounts(tx: Tx, jids: string[]): Promise<Map<string, LockedAccount>> {
  const unique = [...new Set(jids)].sort();
  if (unique.length === 0) return new Map();
  await tx
    .insert(accounts)
    .values(unique.map((jid) => ({ jid })))
    .onConflictDoNothing();
  // Row locks are not expressible in the builder's select for PGlite and postgres.js alike.
  const rows = await queryRows<{ id: string | number; jid: string; last_seq: string | number }>(
    tx,
    sql`select id, jid, last_seq from accounts where jid in ${sql`(${sql.join(
      unique.map((j) => sql`${j}`),
      sql`, `,
    )})`} order by id for update`,
  );
  return new Map(
    rows.map((r) => [r.jid, { id: Number(r.id), jid: r.jid, lastSeq: Number(r.last_seq) }]),
  );
}

/** Rows per UPDATE … FROM (VALUES …): 1000 × 12 columns stays far below 65535 parameters. */
const UPDATE_CHUNK = 1000;

/** Persists new last_seq values for the locked accounts that advanced, one statement per chunk. */
export async function saveAccountSeqs(tx: Tx, locked: Iterable<LockedAccount>): Promise<void> {
  const list = [...locked];
  for (let i = 0; i < list.length; i += UPDATE_CHUNK) {
    const values = list
      .slice(i, i + UPDATE_CHUNK)
      .map((a) => sql`(${a.id}::bigint, ${a.lastSeq}::bigint)`);
    // The builder has no UPDATE … FROM (VALUES …); one UPDATE per account made big batches slow.
    await tx.execute(sql`update accounts set last_seq = v.last_seq
      from (values ${sql.join(values, sql`, `)}) as v(id, last_seq)
      where accounts.id = v.id`);
  }
}

/** Finds or creates the conversations (account, peer) and returns them keyed `${accountId} ${peer}`. */
export async function loadConversations(
  tx: Tx,
  pairs: { accountId: number; peer: string }[],
): Promise<Map<string, ConversationRow>> {
  const unique = new Map(pairs.map((p) => [`${p.accountId} ${p.peer}`, p]));
  if (unique.size === 0) return new Map();
  await tx
    .insert(conversations)
    .values(
      [...unique.values()].map((p) => ({
        accountId: p.accountId,
        peerJid: p.peer,
        version: 0,
        lastEventSeq: 0,
      })),
    )
    .onConflictDoNothing();
  const accountIds = [...new Set(pairs.map((p) => p.accountId))];
  const peers = [...new Set(pairs.map((p) => p.peer))];
  const rows = await tx
    .select()
    .from(conversations)
    .where(
      and(inArray(conversations.accountId, accountIds), inArray(conversations.peerJid, peers)),
    );
  const result = new Map<string, ConversationRow>();
  for (const row of rows) {
    const key = `${row.accountId} ${row.peerJid}`;
    if (unique.has(key)) result.set(key, row);
  }
  return result;
}

/** Persists the folded state of conversations, one statement per chunk of rows. */
export async function saveConversations(tx: Tx, rows: Iterable<ConversationRow>): Promise<void> {
  const list = [...rows];
  const time = (d: Date | null) => d?.toISOString() ?? null;
  for (let i = 0; i < list.length; i += UPDATE_CHUNK) {
    // Every value is cast: VALUES takes its column types from the first row, which may be null.
    const values = list.slice(i, i + UPDATE_CHUNK).map(
      (r) =>
        sql`(${r.accountId}::bigint, ${r.id}::bigint, ${r.version}::bigint, ${r.lastEventSeq}::bigint,
          ${time(r.lastMessageAt)}::timestamptz, ${r.unreadCount}::integer, ${r.readSeq}::bigint,
          ${r.readUntil}::text,
          ${r.peerReadUntil}::text, ${r.pinned}::boolean, ${time(r.mutedUntil)}::timestamptz,
          ${r.archived}::boolean, ${time(r.updatedAt)}::timestamptz)`,
    );
    // The builder has no UPDATE … FROM (VALUES …); one UPDATE per conversation made big batches slow.
    await tx.execute(sql`update conversations set
        version = v.version, last_event_seq = v.last_event_seq, last_message_at = v.last_message_at,
        unread_count = v.unread_count, read_seq = v.read_seq, read_until = v.read_until,
        peer_read_until = v.peer_read_until,
        pinned = v.pinned, muted_until = v.muted_until, archived = v.archived, updated_at = v.updated_at
      from (values ${sql.join(values, sql`, `)}) as v(account_id, id, version, last_event_seq,
        last_message_at, unread_count, read_seq, read_until, peer_read_until, pinned, muted_until,
        archived, updated_at)
      where conversations.account_id = v.account_id and conversations.id = v.id`);
  }
}

/** Announces the accounts a committed transaction touched (delivered only on commit). */
export async function notifyAccounts(tx: Tx, accountIds: number[]): Promise<void> {
  // pg_notify payloads are capped at 8000 bytes; ids are short, so chunks of 500 stay far below.
  for (let i = 0; i < accountIds.length; i += 500) {
    const payload = accountIds.slice(i, i + 500).join(",");
    await tx.execute(sql`select pg_notify(${CHANGES_CHANNEL}, ${payload})`);
  }
}

const INSERT_CHUNK = 1000;

/**
 * The ingest write path: one transaction per batch. Assigns each side its account's next seq,
 * appends the events (skipping dedupe keys already stored, so replays change nothing), folds them
 * into conversations, messages and calls, advances the checkpoint and NOTIFYs — all or nothing.
 */
export async function appendBatch(
  db: Db,
  input: BatchInput,
  options: WriteOptions,
): Promise<BatchResult> {
  return db.transaction(async (tx) => {
    const result: BatchResult = {
      written: 0,
      duplicates: 0,
      foreign: 0,
      accountIds: [],
      byKind: {},
    };
    const sides: Side[] = [];
    for (const copy of input.copies) {
      const copySides = sidesOf(copy, options.isLocal);
      if (copySides.length === 0) result.foreign += copy.events.length;
      sides.push(...copySides);
    }

    if (sides.length > 0) {
      await writeSides(tx, sides, options, result);
    }
    if (input.checkpoint) await advanceCheckpoint(tx, input.checkpoint);
    if (result.accountIds.length > 0) await notifyAccounts(tx, result.accountIds);
    return result;
  });
}

async function writeSides(tx: Tx, allSides: Side[], options: WriteOptions, result: BatchResult) {
  const locked = await lockAccounts(
    tx,
    allSides.map((s) => s.account),
  );
  const accountIds = [...locked.values()].map((a) => a.id);

  // Replays: drop sides whose dedupe key this account already has (and repeats inside the batch).
  const known = new Set(
    (
      await tx
        .select({ accountId: events.accountId, dedupeKey: events.dedupeKey })
        .from(events)
        .where(
          and(
            inArray(events.accountId, accountIds),
            inArray(events.dedupeKey, [...new Set(allSides.map((s) => s.dedupeKey))]),
          ),
        )
    ).map((r) => `${r.accountId} ${r.dedupeKey}`),
  );
  const sides: Side[] = [];
  for (const side of allSides) {
    const key = `${locked.get(side.account)?.id} ${side.dedupeKey}`;
    if (known.has(key)) {
      result.duplicates++;
      continue;
    }
    known.add(key);
    sides.push(side);
  }
  if (sides.length === 0) return;

  const convs = await loadConversations(
    tx,
    sides.map((s) => ({ accountId: accountOf(locked, s).id, peer: s.peer })),
  );
  const folder = new MessageFolder(tx);
  await folder.preload(sides, locked, convs);

  const rows: EventRow[] = [];
  const callUpdates: CallUpdate[] = [];
  const touchedConvs = new Set<ConversationRow>();
  const touchedAccounts = new Set<LockedAccount>();

  for (const side of sides) {
    const account = accountOf(locked, side);
    const conv = convs.get(`${account.id} ${side.peer}`);
    if (!conv) throw new Error(`conversation ${account.id} ${side.peer} was not loaded`);
    const seq = ++account.lastSeq;
    const { event, copy } = side;
    rows.push({
      accountId: account.id,
      seq,
      conversationId: conv.id,
      kind: event.kind,
      direction: side.direction,
      messageId: event.messageId,
      originId: event.originId,
      stanzaId: side.direction === "out" ? copy.senderArchiveId : null,
      targetId: event.kind === "call" ? (event.call?.callId ?? null) : event.targetId,
      body: event.body,
      payload: payloadOf(event, copy),
      sentAt: copy.sentAt,
      dedupeKey: side.dedupeKey,
    });
    result.written++;
    result.byKind[event.kind] = (result.byKind[event.kind] ?? 0) + 1;
    touchedAccounts.add(account);
    touchedConvs.add(conv);
    conv.version = seq;
    conv.lastEventSeq = seq;
    conv.updatedAt = maxDate(conv.updatedAt, copy.sentAt);

    switch (event.kind) {
      case "message": {
        const message = folder.addMessage(account.id, conv.id, side, seq);
        conv.lastMessageAt = maxDate(conv.lastMessageAt, copy.sentAt);
        // A message already retracted when it arrives (replays reorder) never counts as unread.
        if (side.direction === "in") {
          if (!message.retractedAt) conv.unreadCount++;
        } else markRead(conv, seq);
        break;
      }
      case "edit":
      case "reaction":
        folder.modify(account.id, conv.id, side, seq);
        break;
      case "retract": {
        const before = folder.modify(account.id, conv.id, side, seq);
        // The peer took back a message this account has not read yet: it leaves the badge too.
        if (
          side.direction === "in" &&
          before &&
          !before.wasRetracted &&
          before.createdSeq > conv.readSeq &&
          conv.unreadCount > 0
        ) {
          conv.unreadCount--;
        }
        break;
      }
      case "displayed":
        if (side.direction === "out") {
          conv.readUntil = event.targetId;
          markRead(conv, seq);
        } else {
          conv.peerReadUntil = event.targetId;
        }
        break;
      case "received":
        break;
      case "call":
        if (event.call) {
          callUpdates.push({
            accountId: account.id,
            conversationId: conv.id,
            peer: side.peer,
            direction: side.direction,
            signal: event.call,
            senderResource: event.fromResource,
            senderIsAccount: side.direction === "out",
            at: copy.sentAt,
            seq,
          });
        }
        break;
    }
  }

  for (let i = 0; i < rows.length; i += INSERT_CHUNK) {
    await tx.insert(events).values(rows.slice(i, i + INSERT_CHUNK));
  }
  await folder.save();
  if (callUpdates.length > 0) {
    await applyCallSignals(tx, callUpdates, {
      ringTimeoutMs: options.callRingTimeoutMs,
      maxDurationMs: options.callMaxDurationMs ?? 24 * 3_600_000,
    });
  }
  await saveConversations(tx, touchedConvs);
  await saveAccountSeqs(tx, touchedAccounts);
  result.accountIds = [...touchedAccounts].map((a) => a.id);
}

function accountOf(locked: Map<string, LockedAccount>, side: Side): LockedAccount {
  const account = locked.get(side.account);
  if (!account) throw new Error(`account ${side.account} was not locked`);
  return account;
}

/** The account read everything up to `seq` (its own message or displayed marker). */
export function markRead(conv: { unreadCount: number; readSeq: number }, seq: number): void {
  conv.unreadCount = 0;
  conv.readSeq = seq;
}

function maxDate(a: Date | null, b: Date): Date {
  return a && a > b ? a : b;
}

function payloadOf(event: ConversationEvent, copy: ParsedCopy): Record<string, unknown> {
  const payload: Record<string, unknown> = {
    raw: event.raw,
    copy_id: copy.copyId,
    from: event.from,
  };
  if (event.fromResource) payload.from_resource = event.fromResource;
  if (event.reactions) payload.reactions = event.reactions;
  if (event.marker) payload.marker = event.marker;
  if (event.call) payload.call = event.call;
  return payload;
}

async function advanceCheckpoint(tx: Tx, checkpoint: { source: string; position: string }) {
  const [current] = await tx
    .select({ position: checkpoints.position })
    .from(checkpoints)
    .where(eq(checkpoints.source, checkpoint.source))
    .for("update");
  // Archive ids are µs timestamps; a batch may end on an older one than an earlier batch saw.
  if (current && compareArchiveIds(current.position, checkpoint.position) >= 0) return;
  await tx
    .insert(checkpoints)
    .values({ source: checkpoint.source, position: checkpoint.position, updatedAt: new Date() })
    .onConflictDoUpdate({
      target: checkpoints.source,
      set: { position: checkpoint.position, updatedAt: new Date() },
    });
}

/** Numeric comparison of decimal archive ids (they exceed 2^53, so compare as strings). */
export function compareArchiveIds(a: string, b: string): number {
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

interface MessageState {
  row: MessageRow;
  dirty: boolean;
}

interface PendingModifier {
  kind: "edit" | "retract" | "reaction";
  direction: Direction;
  reacter: string;
  body: string | null;
  reactions: string[] | null;
  sentAt: Date;
  seq: number;
}

/**
 * Keeps each message's current state for one batch: loads the rows that the batch's edits,
 * retractions and reactions target, applies the batch in seq order, and applies modifiers that
 * arrived before their message (replays can reorder) when the message itself shows up.
 */
class MessageFolder {
  private readonly states = new Map<string, MessageState>();
  /** by `${accountId} ${conversationId} ${targetId}`: modifiers whose message is not stored yet */
  private readonly pending = new Map<string, PendingModifier[]>();

  constructor(private readonly tx: Tx) {}

  private key(accountId: number, conversationId: number, direction: Direction, id: string) {
    return `${accountId} ${conversationId} ${direction} ${id}`;
  }

  async preload(
    sides: Side[],
    locked: Map<string, LockedAccount>,
    convs: Map<string, ConversationRow>,
  ): Promise<void> {
    const targets = new Set<string>();
    const newIds = new Set<string>();
    const convIds = new Set<number>();
    const accountIds = new Set<number>();
    for (const side of sides) {
      const account = accountOf(locked, side);
      const conv = convs.get(`${account.id} ${side.peer}`);
      if (!conv) continue;
      if (side.event.kind === "message") {
        newIds.add(messageKeyOf(side));
        if (side.event.originId) newIds.add(side.event.originId);
      } else if (isModifier(side.event.kind) && side.event.targetId) {
        targets.add(side.event.targetId);
      } else {
        continue;
      }
      convIds.add(conv.id);
      accountIds.add(account.id);
    }
    if (accountIds.size === 0) return;

    if (targets.size > 0) {
      const ids = [...targets];
      const existing = await this.tx
        .select()
        .from(messages)
        .where(
          and(
            inArray(messages.accountId, [...accountIds]),
            inArray(messages.conversationId, [...convIds]),
            sql`(${inArray(messages.messageId, ids)} or ${inArray(messages.originId, ids)})`,
          ),
        );
      for (const row of existing) this.remember(row, false);
    }

    if (newIds.size > 0) {
      // Modifiers stored by earlier batches whose message had not arrived yet.
      const early = await this.tx
        .select()
        .from(events)
        .where(
          and(
            inArray(events.accountId, [...accountIds]),
            inArray(events.conversationId, [...convIds]),
            inArray(events.targetId, [...newIds]),
            inArray(events.kind, [...MODIFIER_KINDS]),
          ),
        )
        .orderBy(events.seq);
      for (const e of early) {
        if (!e.targetId) continue;
        this.addPending(`${e.accountId} ${e.conversationId} ${e.targetId}`, {
          kind: e.kind as PendingModifier["kind"],
          direction: e.direction,
          reacter: typeof e.payload.from === "string" ? e.payload.from : "",
          body: e.body,
          reactions: Array.isArray(e.payload.reactions) ? (e.payload.reactions as string[]) : null,
          sentAt: e.sentAt,
          seq: e.seq,
        });
      }
    }
  }

  private remember(row: MessageRow, dirty: boolean): MessageState {
    const state = { row, dirty };
    this.states.set(
      this.key(row.accountId, row.conversationId, row.direction, row.messageId),
      state,
    );
    if (row.originId && row.originId !== row.messageId) {
      this.states.set(
        this.key(row.accountId, row.conversationId, row.direction, row.originId),
        state,
      );
    }
    return state;
  }

  private addPending(key: string, modifier: PendingModifier) {
    const list = this.pending.get(key) ?? [];
    list.push(modifier);
    this.pending.set(key, list);
  }

  /** Stores a new message (applying modifiers that arrived before it) and returns its state. */
  addMessage(accountId: number, conversationId: number, side: Side, seq: number): MessageRow {
    const { event, copy } = side;
    const messageId = messageKeyOf(side);
    const state = this.remember(
      {
        accountId,
        conversationId,
        direction: side.direction,
        messageId,
        originId: event.originId,
        stanzaId: side.direction === "out" ? copy.senderArchiveId : null,
        body: event.body,
        sentAt: copy.sentAt,
        editedAt: null,
        retractedAt: null,
        reactions: {},
        createdSeq: seq,
        seq,
      },
      true,
    );
    for (const id of new Set([messageId, event.originId].filter((x): x is string => !!x))) {
      const key = `${accountId} ${conversationId} ${id}`;
      const early = this.pending.get(key);
      if (!early) continue;
      this.pending.delete(key);
      for (const modifier of early) {
        // An edit or retraction only ever comes from the message's own sender.
        if (modifier.kind !== "reaction" && modifier.direction !== side.direction) {
          this.addPending(key, modifier);
          continue;
        }
        applyModifier(state.row, modifier, Math.max(seq, modifier.seq));
      }
    }
    return state.row;
  }

  /**
   * Applies an edit, retraction or reaction to its message, or keeps it until the message
   * arrives. Returns what the target was before, when it is known.
   */
  modify(
    accountId: number,
    conversationId: number,
    side: Side,
    seq: number,
  ): { wasRetracted: boolean; createdSeq: number } | null {
    const { event, copy } = side;
    const target = event.targetId;
    if (!target) return null;
    const kind = event.kind as PendingModifier["kind"];
    const modifier: PendingModifier = {
      kind,
      direction: side.direction,
      reacter: event.from,
      body: event.body,
      reactions: event.reactions,
      sentAt: copy.sentAt,
      seq,
    };
    const opposite: Direction = side.direction === "out" ? "in" : "out";
    // Reactions may target either side's message (the peer's, usually); edits only one's own.
    const candidates: Direction[] =
      kind === "reaction" ? [opposite, side.direction] : [side.direction];
    for (const direction of candidates) {
      const state = this.states.get(this.key(accountId, conversationId, direction, target));
      if (state) {
        const before = { wasRetracted: !!state.row.retractedAt, createdSeq: state.row.createdSeq };
        applyModifier(state.row, modifier, seq);
        state.dirty = true;
        return before;
      }
    }
    this.addPending(`${accountId} ${conversationId} ${target}`, modifier);
    return null;
  }

  async save(): Promise<void> {
    const dirty = [...new Set([...this.states.values()].filter((s) => s.dirty))].map((s) => s.row);
    for (let i = 0; i < dirty.length; i += INSERT_CHUNK) {
      await this.tx
        .insert(messages)
        .values(dirty.slice(i, i + INSERT_CHUNK))
        .onConflictDoUpdate({
          target: [
            messages.accountId,
            messages.conversationId,
            messages.direction,
            messages.messageId,
          ],
          set: {
            originId: sql`excluded.origin_id`,
            stanzaId: sql`coalesce(excluded.stanza_id, ${messages.stanzaId})`,
            body: sql`excluded.body`,
            sentAt: sql`excluded.sent_at`,
            editedAt: sql`excluded.edited_at`,
            retractedAt: sql`excluded.retracted_at`,
            reactions: sql`excluded.reactions`,
            seq: sql`excluded.seq`,
          },
        });
    }
  }
}

function isModifier(kind: string): kind is PendingModifier["kind"] {
  return (MODIFIER_KINDS as readonly string[]).includes(kind);
}

function applyModifier(row: MessageRow, modifier: PendingModifier, seq: number): void {
  row.seq = Math.max(row.seq ?? 0, seq);
  switch (modifier.kind) {
    case "retract":
      row.retractedAt = modifier.sentAt;
      row.body = null;
      return;
    case "edit":
      // A retraction is final; of several edits the latest by server time wins.
      if (row.retractedAt) return;
      if (row.editedAt && row.editedAt > modifier.sentAt) return;
      row.body = modifier.body;
      row.editedAt = modifier.sentAt;
      return;
    case "reaction": {
      const reactions: Reactions = { ...(row.reactions ?? {}) };
      if (modifier.reactions && modifier.reactions.length > 0) {
        reactions[modifier.reacter] = modifier.reactions;
      } else {
        delete reactions[modifier.reacter];
      }
      row.reactions = reactions;
      return;
    }
  }
}
