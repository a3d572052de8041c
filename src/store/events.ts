import { and, inArray, sql } from "drizzle-orm";
import type { ConversationEvent, ParsedCopy } from "../ingest/parse.js";
import { applyCallSignals, type CallUpdate } from "./calls.js";
import { advanceCheckpoint, laneSource } from "./checkpoint.js";
import { type Db, queryRows, type Tx } from "./db.js";
import { recordsOf, rowsOf } from "./json-rows.js";
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
  const batch = recordsOf(
    { jid: "text" },
    unique.map((jid) => ({ jid })),
  );
  // drizzle's insert … select lists the identity column, which a select cannot fill.
  await tx.execute(
    sql`insert into accounts (jid) select r.jid from ${batch} on conflict do nothing`,
  );
  // Row locks are not expressible in the builder's select for PGlite and postgres.js alike.
  const rows = await queryRows<{ id: string | number; jid: string; last_seq: string | number }>(
    tx,
    sql`select id, jid, last_seq from accounts where jid in (select r.jid from ${batch})
      order by id for update`,
  );
  return new Map(
    rows.map((r) => [r.jid, { id: Number(r.id), jid: r.jid, lastSeq: Number(r.last_seq) }]),
  );
}

/** Persists new last_seq values for the locked accounts that advanced, in one statement. */
export async function saveAccountSeqs(tx: Tx, locked: Iterable<LockedAccount>): Promise<void> {
  const list = [...locked];
  if (list.length === 0) return;
  // The builder has no UPDATE … FROM; one UPDATE per account made big batches slow.
  await tx.execute(sql`update accounts set last_seq = r."lastSeq"
    from ${recordsOf({ id: "bigint", lastSeq: "bigint" }, list)}
    where accounts.id = r.id`);
}

/** Finds or creates the conversations (account, peer) and returns them keyed `${accountId} ${peer}`. */
export async function loadConversations(
  tx: Tx,
  pairs: { accountId: number; peer: string }[],
): Promise<Map<string, ConversationRow>> {
  const unique = new Map(pairs.map((p) => [`${p.accountId} ${p.peer}`, p]));
  const result = new Map<string, ConversationRow>();
  const remember = (rows: ConversationRow[]) => {
    for (const row of rows) result.set(`${row.accountId} ${row.peerJid}`, row);
  };
  // Most conversations exist already: read first, create only the missing ones, read those.
  remember(await selectConversations(tx, [...unique.values()]));
  const missing = [...unique].filter(([key]) => !result.has(key)).map(([, p]) => p);
  if (missing.length === 0) return result;
  // drizzle's insert … select lists the identity column, which a select cannot fill.
  await tx.execute(sql`insert into conversations (account_id, peer_jid, version, last_event_seq)
    select r."accountId", r.peer, 0, 0
    from ${recordsOf({ accountId: "bigint", peer: "text" }, missing)}
    on conflict do nothing`);
  remember(await selectConversations(tx, missing));
  return result;
}

function selectConversations(
  tx: Tx,
  pairs: { accountId: number; peer: string }[],
): Promise<ConversationRow[]> {
  if (pairs.length === 0) return Promise.resolve([]);
  // A row-value IN over the batch's exact pairs: the builder only has per-column IN lists.
  return tx
    .select()
    .from(conversations)
    .where(
      sql`(${conversations.accountId}, ${conversations.peerJid}) in
        (select r."accountId", r.peer from ${recordsOf({ accountId: "bigint", peer: "text" }, pairs)})`,
    );
}

/** Persists the folded state of conversations, one statement per chunk of rows. */
export async function saveConversations(tx: Tx, rows: Iterable<ConversationRow>): Promise<void> {
  const list = [...rows];
  if (list.length === 0) return;
  const v = recordsOf(
    {
      accountId: "bigint",
      id: "bigint",
      version: "bigint",
      lastEventSeq: "bigint",
      lastMessageAt: "timestamptz",
      unreadCount: "integer",
      readSeq: "bigint",
      readUntil: "text",
      peerReadUntil: "text",
      pinned: "boolean",
      mutedUntil: "timestamptz",
      archived: "boolean",
      updatedAt: "timestamptz",
    },
    list,
  );
  // The builder has no UPDATE … FROM; one UPDATE per conversation made big batches slow.
  await tx.execute(sql`update conversations set
      version = r.version, last_event_seq = r."lastEventSeq", last_message_at = r."lastMessageAt",
      unread_count = r."unreadCount", read_seq = r."readSeq", read_until = r."readUntil",
      peer_read_until = r."peerReadUntil", pinned = r.pinned, muted_until = r."mutedUntil",
      archived = r.archived, updated_at = r."updatedAt"
    from ${v}
    where conversations.account_id = r."accountId" and conversations.id = r.id`);
}

/** Announces the accounts a committed transaction touched (delivered only on commit). */
export async function notifyAccounts(tx: Tx, accountIds: number[]): Promise<void> {
  // pg_notify payloads are capped at 8000 bytes; ids are short, so chunks of 500 stay far below.
  for (let i = 0; i < accountIds.length; i += 500) {
    const payload = accountIds.slice(i, i + 500).join(",");
    await tx.execute(sql`select pg_notify(${CHANGES_CHANNEL}, ${payload})`);
  }
}

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
  return appendInLanes(db, input, options, 1);
}

/**
 * appendBatch in `lanes` transactions run side by side, each on its own connection: every row
 * ingest writes belongs to one account, so splitting the sides by account gives lanes that never
 * touch the same rows. Each lane advances its own checkpoint row (see checkpoint.ts), even with
 * nothing else to write, so each row says how far that lane's accounts are durable.
 */
export async function appendInLanes(
  db: Db,
  input: BatchInput,
  options: WriteOptions,
  lanes: number,
): Promise<BatchResult> {
  const result = emptyResult();
  const byLane: Side[][] = Array.from({ length: lanes }, () => []);
  for (const copy of input.copies) {
    const copySides = sidesOf(copy, options.isLocal);
    if (copySides.length === 0) result.foreign += copy.events.length;
    for (const side of copySides) byLane[laneOf(side.account, lanes)]?.push(side);
  }
  const outcomes = await Promise.allSettled(
    byLane.map((sides, lane) => {
      const checkpoint = input.checkpoint && {
        source: laneSource(input.checkpoint.source, lane, lanes),
        position: input.checkpoint.position,
      };
      return db.transaction((tx) => writeLane(tx, sides, checkpoint, options));
    }),
  );
  for (const outcome of outcomes) {
    if (outcome.status === "rejected") throw outcome.reason;
    const lane = outcome.value;
    result.written += lane.written;
    result.duplicates += lane.duplicates;
    result.accountIds.push(...lane.accountIds);
    for (const [kind, n] of Object.entries(lane.byKind) as [EventKindName, number][]) {
      result.byKind[kind] = (result.byKind[kind] ?? 0) + n;
    }
  }
  return result;
}

/** The lane an account's rows are written in: a stable hash of its JID (FNV-1a). */
export function laneOf(jid: string, lanes: number): number {
  if (lanes === 1) return 0;
  let hash = 0x811c9dc5;
  for (let i = 0; i < jid.length; i++) {
    hash = Math.imul(hash ^ jid.charCodeAt(i), 0x01000193);
  }
  return (hash >>> 0) % lanes;
}

function emptyResult(): BatchResult {
  return { written: 0, duplicates: 0, foreign: 0, accountIds: [], byKind: {} };
}

async function writeLane(
  tx: Tx,
  sides: Side[],
  checkpoint: BatchInput["checkpoint"],
  options: WriteOptions,
): Promise<BatchResult> {
  const result = emptyResult();
  const writes = sides.length > 0 ? await writeSides(tx, sides, options, result) : [];
  if (checkpoint) writes.push(advanceCheckpoint(tx, checkpoint));
  if (result.accountIds.length > 0) writes.push(notifyAccounts(tx, result.accountIds));
  await settled(writes);
  return result;
}

/**
 * Waits for statements sent together and fails with the first error once all have finished.
 * Sent without waiting for each other, they share the transaction's connection back to back
 * (postgres.js pipelines them) instead of paying a round trip each; none outlives the transaction.
 */
async function settled(statements: Promise<unknown>[]): Promise<void> {
  for (const outcome of await Promise.allSettled(statements)) {
    if (outcome.status === "rejected") throw outcome.reason;
  }
}

/** Folds the sides into rows and returns their writes, already sent. */
async function writeSides(
  tx: Tx,
  allSides: Side[],
  options: WriteOptions,
  result: BatchResult,
): Promise<Promise<unknown>[]> {
  const locked = await lockAccounts(
    tx,
    allSides.map((s) => s.account),
  );

  // Replays: drop sides whose dedupe key this account already has (and repeats inside the batch).
  const keys = new Map(
    allSides.map((s) => {
      const accountId = accountOf(locked, s).id;
      return [`${accountId} ${s.dedupeKey}`, { accountId, dedupeKey: s.dedupeKey }];
    }),
  );
  const known = new Set(
    (
      await tx
        .select({ accountId: events.accountId, dedupeKey: events.dedupeKey })
        .from(events)
        .where(
          // A row-value IN over the exact keys: the builder only has per-column IN lists.
          sql`(${events.accountId}, ${events.dedupeKey}) in
            (select r."accountId", r."dedupeKey" from ${recordsOf(
              { accountId: "bigint", dedupeKey: "text" },
              [...keys.values()],
            )})`,
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
  if (sides.length === 0) return [];

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

  result.accountIds = [...touchedAccounts].map((a) => a.id);
  return [
    tx.insert(events).select(rowsOf(events, rows)).execute(),
    folder.save(),
    applyCallSignals(tx, callUpdates, {
      ringTimeoutMs: options.callRingTimeoutMs,
      maxDurationMs: options.callMaxDurationMs ?? 24 * 3_600_000,
    }),
    saveConversations(tx, touchedConvs),
    saveAccountSeqs(tx, touchedAccounts),
  ];
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
    /** `${accountId} ${conversationId} ${id}` of the messages modifiers target, and of new ones */
    const targets = new Map<string, MessageKey>();
    const newIds = new Map<string, MessageKey>();
    const add = (
      into: Map<string, MessageKey>,
      accountId: number,
      conversationId: number,
      id: string,
    ) => into.set(`${accountId} ${conversationId} ${id}`, { accountId, conversationId, id });
    for (const side of sides) {
      const account = accountOf(locked, side);
      const conv = convs.get(`${account.id} ${side.peer}`);
      if (!conv) continue;
      if (side.event.kind === "message") {
        add(newIds, account.id, conv.id, messageKeyOf(side));
        if (side.event.originId) add(newIds, account.id, conv.id, side.event.originId);
      } else if (isModifier(side.event.kind) && side.event.targetId) {
        add(targets, account.id, conv.id, side.event.targetId);
      }
    }

    const keys = messageKeys(targets);
    // Row-value INs over the exact (account, conversation, id) keys: the builder has none.
    const existing =
      targets.size === 0
        ? Promise.resolve([])
        : this.tx
            .select()
            .from(messages)
            .where(
              sql`(${messages.accountId}, ${messages.conversationId}, ${messages.messageId}) in ${keys}
                or (${messages.accountId}, ${messages.conversationId}, ${messages.originId}) in ${keys}`,
            )
            .execute();
    // Modifiers stored by earlier batches whose message had not arrived yet.
    const early =
      newIds.size === 0
        ? Promise.resolve([])
        : this.tx
            .select()
            .from(events)
            .where(
              and(
                sql`(${events.accountId}, ${events.conversationId}, ${events.targetId}) in ${messageKeys(newIds)}`,
                inArray(events.kind, [...MODIFIER_KINDS]),
              ),
            )
            .orderBy(events.seq)
            .execute();
    await settled([existing, early]);

    for (const row of await existing) this.remember(row, false);
    for (const e of await early) {
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
    if (dirty.length === 0) return;
    await this.tx
      .insert(messages)
      .select(rowsOf(messages, dirty))
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

interface MessageKey {
  accountId: number;
  conversationId: number;
  id: string;
}

function messageKeys(keys: Map<string, MessageKey>) {
  return sql`(select r."accountId", r."conversationId", r.id from ${recordsOf(
    { accountId: "bigint", conversationId: "bigint", id: "text" },
    [...keys.values()],
  )})`;
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
