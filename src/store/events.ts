import { sql } from "drizzle-orm";
import type { AccountRemoval, ConversationEvent, ParsedCopy } from "../ingest/parse.js";
import { type CallRow, type CallUpdate, loadCalls, saveCallSignals } from "./calls.js";
import { advanceCheckpoint, laneSource } from "./checkpoint.js";
import { type Db, preparedRows, queryRows, type Tx } from "./db.js";
import { eraseMirror } from "./erase.js";
import { recordsOf } from "./json-rows.js";
import { messageColumnsOf, messageJsonSql } from "./message-json.js";
import { conversations } from "./schema/conversations.js";
import { type EventKindName, events } from "./schema/events.js";
import type { messages, Reactions } from "./schema/messages.js";

/** The channel every committed change is announced on; the payload lists account ids. */
export const CHANGES_CHANNEL = "syncside_changes";

type Direction = "in" | "out";
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
  /**
   * events skipped because their dedupe key was already stored (replays), or because they were
   * sent before their account's mirror was erased (the archive read again)
   */
  duplicates: number;
  /** events with no local account on either side */
  foreign: number;
  accountIds: number[];
  byKind: Partial<Record<EventKindName, number>>;
  /**
   * server time (epoch ms) of the newest copy the batch wrote, or null when it wrote none: a
   * copy read again (a look-back, a replay) says nothing about how far behind the store is
   */
  newestWrittenAt: number | null;
  /** accounts whose mirror a removal notice erased (a notice read again erases nothing) */
  erased: { jid: string; accountId: number; removedAt: Date }[];
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

/**
 * Adds to `sides` those sides of the copy that `keep` takes (by account: a lane's share) and
 * returns how many local sides the copy has in all, taken or not.
 */
function addSides(
  copy: ParsedCopy,
  isLocal: (jid: string) => boolean,
  keep: (account: string) => boolean,
  sides: Side[],
): number {
  let local = 0;
  copy.events.forEach((event, index) => {
    // The server's word (registered account or not) beats a guess from the domain.
    const out = copy.fromLocal ?? isLocal(event.from);
    const into = copy.toLocal ?? isLocal(event.to);
    if (!out && !into) return;
    const dedupeKey = `copy:${copy.copyId}:${index}`;
    const add = (account: string, peer: string, direction: Direction) => {
      local++;
      if (keep(account)) sides.push({ account, peer, direction, event, copy, dedupeKey });
    };
    if (out) add(event.from, event.to, "out");
    if (into) add(event.to, event.from, "in");
  });
  return local;
}

const MODIFIER_KINDS = ["edit", "retract", "reaction"] as const;

/** The id a client uses for a message: its stanza id, else its origin-id, else the copy's. */
function messageKeyOf(side: Side): string {
  return side.event.messageId ?? side.event.originId ?? `copy:${side.copy.copyId}`;
}

/** messageKeyOf in SQL, of a stored message event: the key of its row in `messages`. */
export const MESSAGE_KEY_OF_EVENT = sql`coalesce(${events.messageId}, ${events.originId},
  'copy:' || (${events.payload}->>'copy_id'))`;

interface LockedAccount {
  id: number;
  jid: string;
  lastSeq: number;
  /** when an admin last erased the account's mirror: nothing sent before it is stored again */
  erasedAt: number | null;
}

/**
 * Creates missing accounts and locks every account row of the batch, in id order so that two
 * writers (ingest and a settings change from the API) can never deadlock. Sequence numbers are
 * assigned under these locks, which is what keeps each account's seq gap-free in commit order.
 */
export async function lockAccounts(tx: Tx, jids: string[]): Promise<Map<string, LockedAccount>> {
  const unique = [...new Set(jids)].sort();
  if (unique.length === 0) return new Map();
  // Nearly every account exists: lock those first, then create and lock the few that do not.
  const locked = await selectForUpdate(tx, unique);
  const missing = unique.filter((jid) => !locked.has(jid));
  if (missing.length === 0) return locked;
  // drizzle's insert … select lists the identity column, which a select cannot fill.
  const inserted = preparedRows(
    tx,
    "insert_accounts",
    sql`insert into accounts (jid) select r.jid from ${jidRecords(missing)} on conflict do nothing`,
  );
  const created = selectForUpdate(tx, missing);
  await settled([inserted, created]);
  for (const [jid, account] of await created) locked.set(jid, account);
  return locked;
}

function jidRecords(jids: string[]) {
  return recordsOf(
    { jid: "text" },
    jids.map((jid) => ({ jid })),
  );
}

async function selectForUpdate(tx: Tx, jids: string[]): Promise<Map<string, LockedAccount>> {
  // Row locks are not expressible in the builder's select for PGlite and postgres.js alike.
  const rows = await preparedRows<{
    id: string | number;
    jid: string;
    last_seq: string | number;
    erased_at: number | null;
  }>(
    tx,
    "lock_accounts",
    sql`select id, jid, last_seq, ${sql.raw(epochMs("erased_at"))} as erased_at from accounts
      where jid in (select r.jid from ${jidRecords(jids)}) order by id for update`,
  );
  return new Map(
    rows.map((r) => [
      r.jid,
      { id: Number(r.id), jid: r.jid, lastSeq: Number(r.last_seq), erasedAt: r.erased_at },
    ]),
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
      readAt: "timestamptz",
      readUntil: "text",
      readUntilAt: "timestamptz",
      peerReadUntil: "text",
      peerReadUntilAt: "timestamptz",
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
      unread_count = r."unreadCount", read_at = r."readAt", read_until = r."readUntil",
      read_until_at = r."readUntilAt", peer_read_until = r."peerReadUntil",
      peer_read_until_at = r."peerReadUntilAt", pinned = r.pinned, muted_until = r."mutedUntil",
      archived = r.archived, updated_at = r."updatedAt"
    from ${v}
    where conversations.account_id = r."accountId" and conversations.id = r.id`);
}

/** Announces the accounts a committed transaction touched (delivered only on commit). */
export async function notifyAccounts(tx: Tx, accountIds: number[]): Promise<void> {
  // pg_notify payloads are capped at 8000 bytes; ids are short, so chunks of 500 stay far below.
  for (let i = 0; i < accountIds.length; i += 500) {
    const payload = accountIds.slice(i, i + 500).join(",");
    await preparedRows(tx, "notify", sql`select pg_notify(${CHANGES_CHANNEL}, ${payload})`);
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
  const outcomes = await Promise.allSettled(
    Array.from({ length: lanes }, (_, lane) => appendLane(db, input, options, lane, lanes)),
  );
  const result = emptyResult();
  for (const outcome of outcomes) {
    if (outcome.status === "rejected") throw outcome.reason;
    const lane = outcome.value;
    result.written += lane.written;
    result.duplicates += lane.duplicates;
    result.foreign += lane.foreign;
    result.accountIds.push(...lane.accountIds);
    if (lane.newestWrittenAt !== null) {
      result.newestWrittenAt = Math.max(result.newestWrittenAt ?? 0, lane.newestWrittenAt);
    }
    result.erased.push(...lane.erased);
    for (const [kind, n] of Object.entries(lane.byKind) as [EventKindName, number][]) {
      result.byKind[kind] = (result.byKind[kind] ?? 0) + n;
    }
  }
  return result;
}

/**
 * Lane `lane` of `lanes` of a batch, in one transaction: the sides of the batch's copies whose
 * account hashes to this lane, and the lane's checkpoint. Lanes share no rows, so each may run
 * ahead of the others: a lane's checkpoint only vouches for its own accounts. Copies with no
 * local side are counted as foreign by lane 0 alone.
 */
export async function appendLane(
  db: Db,
  input: BatchInput,
  options: WriteOptions,
  lane: number,
  lanes: number,
): Promise<BatchResult> {
  const sides: Side[] = [];
  const removals: AccountRemoval[] = [];
  let foreign = 0;
  // Only this lane's sides are built: every lane goes through every copy of the batch.
  const keep = lanes === 1 ? () => true : (account: string) => laneOf(account, lanes) === lane;
  for (const copy of input.copies) {
    // A removal belongs to the removed account's lane, in order with that account's copies.
    if (copy.removal) {
      if (keep(copy.removal.jid)) removals.push(copy.removal);
      continue;
    }
    if (addSides(copy, options.isLocal, keep, sides) === 0) foreign += copy.events.length;
  }
  const checkpoint = input.checkpoint && {
    source: laneSource(input.checkpoint.source, lane, lanes),
    position: input.checkpoint.position,
  };
  const result =
    sides.length === 0 && removals.length === 0 && !checkpoint
      ? emptyResult()
      : await db.transaction((tx) => writeLane(tx, sides, removals, checkpoint, options));
  if (lane === 0) result.foreign = foreign;
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
  return {
    written: 0,
    duplicates: 0,
    foreign: 0,
    accountIds: [],
    byKind: {},
    newestWrittenAt: null,
    erased: [],
  };
}

async function writeLane(
  tx: Tx,
  sides: Side[],
  removals: AccountRemoval[],
  checkpoint: BatchInput["checkpoint"],
  options: WriteOptions,
): Promise<BatchResult> {
  const result = emptyResult();
  // Erased first: the sides then go by the account's new erased_at, so those sent before the
  // removal are dropped and those sent after it (the JID registered again) are kept, wherever
  // they sit in the batch.
  if (removals.length > 0) await eraseRemoved(tx, removals, result);
  const writes = sides.length > 0 ? await writeSides(tx, sides, options, result) : [];
  if (checkpoint) writes.push(advanceCheckpoint(tx, checkpoint));
  const notify = [...new Set([...result.accountIds, ...result.erased.map((e) => e.accountId)])];
  if (notify.length > 0) writes.push(notifyAccounts(tx, notify));
  await settled(writes);
  return result;
}

/**
 * Erases the mirror of each account ejabberd removed, as the admin erase does, under the row
 * lock ingest writes under, with the removal's own time as erased_at: copies sent before it are
 * never stored again (a look-back reading them), copies sent after it are the new owner's. A
 * notice read again (live, then from the archive) finds erased_at at or past its time and
 * erases nothing, so the new owner's mirror is safe. An account ingest has never seen gets its
 * row all the same, erased as of the removal: a copy sent before it may still come (written to
 * the archive late, or from offline storage) and must be dropped then too.
 */
async function eraseRemoved(
  tx: Tx,
  removals: AccountRemoval[],
  result: BatchResult,
): Promise<void> {
  for (const removal of [...removals].sort((a, b) => a.at.getTime() - b.at.getTime())) {
    await queryRows(
      tx,
      sql`insert into accounts (jid) values (${removal.jid}) on conflict do nothing`,
    );
    const [row] = await queryRows<{ id: string | number; current: boolean }>(
      tx,
      sql`select id, coalesce(erased_at >= ${removal.at.toISOString()}::timestamptz, false)
        as current from accounts where jid = ${removal.jid} for update`,
    );
    if (!row || row.current) continue;
    const accountId = Number(row.id);
    await eraseMirror(tx, accountId, sql`${removal.at.toISOString()}::timestamptz`);
    result.erased.push({ jid: removal.jid, accountId, removedAt: removal.at });
  }
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

/** A conversation as ingest folds it: only the columns a batch reads or changes. */
interface ConversationState {
  accountId: number;
  id: number;
  unreadCount: number;
  /** everything sent up to it is read (see conversations.read_at) */
  readAt: Date | null;
  /** unread_count is counted again from the stored messages once the batch is written */
  recount: boolean;
  readUntil: string | null;
  /** server time of the marker that set readUntil: an older marker changes nothing */
  readUntilAt: Date | null;
  peerReadUntil: string | null;
  peerReadUntilAt: Date | null;
  /** the seq of the batch's last event in it (version and last_event_seq alike) */
  version: number;
  /** when its newest message was sent, stored or of the batch */
  lastMessageAt: Date | null;
  /** the newest event of the batch in it: the stored one may be newer */
  updatedAt: Date | null;
}

/** What one lane reads before it folds: all sent at once, keyed by account id and peer. */
interface LaneState {
  /** `${accountId} ${dedupeKey}` of the sides already stored */
  known: Set<string>;
  convs: Map<string, ConversationState>;
  messages: MessageRow[];
  early: EarlyModifier[];
  calls: CallRow[];
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
  const state = await readLane(tx, allSides, locked);

  // Replays: drop sides whose dedupe key this account already has (and repeats inside the batch),
  // and those an erase of the account's mirror took away.
  const sides: Side[] = [];
  for (const side of allSides) {
    const account = accountOf(locked, side);
    const key = `${account.id} ${side.dedupeKey}`;
    if (
      state.known.has(key) ||
      (account.erasedAt !== null && side.copy.sentAt.getTime() <= account.erasedAt)
    ) {
      result.duplicates++;
      continue;
    }
    state.known.add(key);
    sides.push(side);
    const sentAt = side.copy.sentAt.getTime();
    if (result.newestWrittenAt === null || sentAt > result.newestWrittenAt) {
      result.newestWrittenAt = sentAt;
    }
  }
  if (sides.length === 0) return [];

  const convs = state.convs;
  const missing = new Map<string, { a: number; p: string }>();
  for (const side of sides) {
    const key = `${accountOf(locked, side).id} ${side.peer}`;
    if (!convs.has(key)) missing.set(key, { a: accountOf(locked, side).id, p: side.peer });
  }
  if (missing.size > 0) {
    for (const conv of await createConversations(tx, [...missing.values()])) {
      convs.set(`${conv.accountId} ${conv.peer}`, conv.state);
    }
  }

  const folder = new MessageFolder(tx);
  folder.load(state.messages, state.early);
  const rows: EventRecord[] = [];
  const callUpdates: CallUpdate[] = [];
  const touchedConvs = new Set<ConversationState>();
  const touchedAccounts = new Set<LockedAccount>();

  for (const side of sides) {
    const account = accountOf(locked, side);
    const conv = convs.get(`${account.id} ${side.peer}`);
    if (!conv) throw new Error(`conversation ${account.id} ${side.peer} was not loaded`);
    const seq = ++account.lastSeq;
    const { event, copy } = side;
    rows.push(eventRecord(side, account.id, conv.id, seq));
    result.written++;
    result.byKind[event.kind] = (result.byKind[event.kind] ?? 0) + 1;
    touchedAccounts.add(account);
    touchedConvs.add(conv);
    conv.version = seq;
    conv.updatedAt = maxDate(conv.updatedAt, copy.sentAt);

    switch (event.kind) {
      case "message": {
        const { row, arrival } = folder.addMessage(account.id, conv.id, side, seq);
        conv.lastMessageAt = maxDate(conv.lastMessageAt, copy.sentAt);
        if (side.direction === "out") markReadUntil(conv, copy.sentAt);
        // A message id used again: the message replaced may or may not have counted.
        else if (arrival === "replaced") conv.recount = true;
        else if (arrival === "kept") break;
        // One already retracted when it arrives (replays reorder) never counts as unread, nor
        // one sent before the account read on (catch-up writes it after newer ones).
        else if (isUnread(conv, row)) conv.unreadCount++;
        break;
      }
      case "edit":
      case "reaction":
        folder.modify(account.id, conv.id, side, seq);
        break;
      case "retract": {
        const before = folder.modify(account.id, conv.id, side, seq);
        // The peer took back a message this account has not read yet: it leaves the badge too.
        if (side.direction === "in" && before && isUnread(conv, before) && conv.unreadCount > 0) {
          conv.unreadCount--;
        }
        break;
      }
      case "displayed":
        // A marker older than the one in place (replays and catch-up interleave with live
        // copies) is kept in the log but moves nothing back. What it read counts on its own:
        // a read_until request may have named an older message after it was sent.
        if (side.direction === "out") {
          markReadUntil(conv, copy.sentAt);
          if (conv.readUntilAt && conv.readUntilAt > copy.sentAt) break;
          conv.readUntil = event.targetId;
          conv.readUntilAt = copy.sentAt;
        } else {
          if (conv.peerReadUntilAt && conv.peerReadUntilAt > copy.sentAt) break;
          conv.peerReadUntil = event.targetId;
          conv.peerReadUntilAt = copy.sentAt;
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
    insertEvents(tx, rows),
    // Sent once the upsert answers, so after every write below.
    folder.save().then((replaced) => recountUnread(tx, replaced)),
    saveCallSignals(tx, state.calls, callUpdates, {
      ringTimeoutMs: options.callRingTimeoutMs,
      maxDurationMs: options.callMaxDurationMs ?? 24 * 3_600_000,
    }),
    saveFoldedConversations(tx, touchedConvs),
    recountUnread(
      tx,
      [...touchedConvs].filter((c) => c.recount),
    ),
    run(
      tx,
      "save_lane_seqs",
      `update accounts a set last_seq = r.s from json_to_recordset($1::json) as r(i bigint, s bigint)
       where a.id = r.i`,
      [...touchedAccounts].map((a) => ({ i: a.id, s: a.lastSeq })),
    ),
  ];
}

/**
 * Runs one of ingest's hot statements, which take a batch's rows as one json parameter
 * (json_to_recordset, which the builder cannot say). Their text is fixed, so each is prepared
 * once per connection and the statements of a lane pipeline (see preparedRows).
 */
function run<T>(tx: Tx, name: string, text: string, records: object[]): Promise<T[]> {
  return preparedRows<T>(tx, name, { sql: text, params: [JSON.stringify(records)] });
}

/** Sends every read a lane needs before it folds, together: one round trip instead of five. */
async function readLane(
  tx: Tx,
  sides: Side[],
  locked: Map<string, LockedAccount>,
): Promise<LaneState> {
  const keys = new Map<string, { a: number; k: string }>();
  const pairs = new Map<string, { a: number; p: string }>();
  /** message ids that modifiers target, per direction they may have been sent in */
  const targets = new Map<string, { a: number; p: string; d: Direction; i: string }>();
  /**
   * ids of the batch's new messages, which modifiers stored earlier may target: by account only,
   * as events_account_target indexes them (a modifier of another conversation is never applied)
   */
  const newIds = new Map<string, { a: number; i: string }>();
  const callKeys = new Map<string, { accountId: number; callId: string }>();
  for (const side of sides) {
    const a = accountOf(locked, side).id;
    const p = side.peer;
    keys.set(`${a} ${side.dedupeKey}`, { a, k: side.dedupeKey });
    pairs.set(`${a} ${p}`, { a, p });
    const { event } = side;
    if (event.kind === "message") {
      for (const i of [messageKeyOf(side), event.originId]) {
        if (i) newIds.set(`${a} ${i}`, { a, i });
      }
    } else if (isModifier(event.kind) && event.targetId) {
      for (const d of candidateDirections(event.kind, side.direction)) {
        targets.set(`${a} ${p} ${d} ${event.targetId}`, { a, p, d, i: event.targetId });
      }
    } else if (event.kind === "call" && event.call) {
      // A finish names the session it migrates to, which may already be stored.
      for (const callId of [event.call.callId, event.call.migratedTo]) {
        if (callId) callKeys.set(`${a} ${callId}`, { accountId: a, callId });
      }
    }
  }
  const known = run<{ account_id: string; dedupe_key: string }>(
    tx,
    "select_known_events",
    `select r.a as account_id, r.k as dedupe_key
      from json_to_recordset($1::json) as r(a bigint, k text)
      where exists (select from events e where e.account_id = r.a and e.dedupe_key = r.k)`,
    [...keys.values()],
  );
  const convs = selectFoldedConversations(tx, [...pairs.values()]);
  const messages =
    targets.size === 0
      ? Promise.resolve([])
      : run<StoredMessage>(tx, "select_target_messages", SELECT_TARGET_MESSAGES, [
          ...targets.values(),
        ]);
  // Modifiers stored by earlier batches whose message had not arrived yet.
  const early =
    newIds.size === 0
      ? Promise.resolve([])
      : run<StoredModifier>(
          tx,
          "select_early_modifiers",
          `select e.account_id, e.conversation_id, e.target_id, e.kind, e.direction, e.body,
             e.payload->>'from' as reacter, e.payload->'reactions' as reactions,
             ${epochMs("e.sent_at")} as sent_at, e.seq
           from json_to_recordset($1::json) as r(a bigint, i text)
           join events e on e.account_id = r.a and e.target_id = r.i
             and e.kind in ('edit', 'retract', 'reaction')
           order by e.seq`,
          [...newIds.values()],
        );
  const calls = loadCalls(tx, [...callKeys.values()]);
  await settled([known, convs, messages, early, calls]);
  return {
    known: new Set((await known).map((r) => `${r.account_id} ${r.dedupe_key}`)),
    convs: new Map((await convs).map((c) => [`${c.accountId} ${c.peer}`, c.state])),
    messages: (await messages).map(messageOfStored),
    early: (await early).map(modifierOfStored),
    calls: await calls,
  };
}

/** Epoch milliseconds of a timestamp, which both drivers return as a plain number. */
function epochMs(column: string): string {
  return `(extract(epoch from ${column}) * 1000)::float8`;
}

function dateOf(ms: number | null): Date | null {
  return ms === null ? null : new Date(ms);
}

const STORED_MESSAGE = `m.account_id, m.conversation_id, m.direction, m.message_id, m.origin_id,
  m.stanza_id, m.body, ${epochMs("m.sent_at")} as sent_at, ${epochMs("m.edited_at")} as edited_at,
  ${epochMs("m.retracted_at")} as retracted_at, m.reactions, m.reacted_at, m.created_seq, m.seq`;

/**
 * The stored messages that a batch's edits, reactions and retractions target, by message id or
 * origin-id: one row of `$1` per target (account, peer, direction, id).
 *
 * A target is looked up by its unique key, messages_key. Joined plainly, PostgreSQL estimates
 * one row per (account, conversation) as well as per full key (it takes the join's columns as
 * independent) and may pick messages_account_conversation_sent, reading every message of
 * the conversation to filter one out: O(conversation length) per edit, reaction or
 * retraction. Ordered by the key's own columns, only messages_key answers without a sort.
 */
export const SELECT_TARGET_MESSAGES = `with k as (
    select c.account_id, c.id, r.d, r.i
    from json_to_recordset($1::json) as r(a bigint, p text, d text, i text)
    join conversations c on c.account_id = r.a and c.peer_jid = r.p)
  select t.* from k cross join lateral (
    select ${STORED_MESSAGE} from messages m
    where m.account_id = k.account_id and m.conversation_id = k.id
      and m.direction = k.d and m.message_id = k.i
    order by m.direction, m.message_id limit 1) t
  union
  select ${STORED_MESSAGE} from messages m join k
    on m.account_id = k.account_id and m.conversation_id = k.id and m.origin_id = k.i
    and m.origin_id <> m.message_id`;

interface StoredMessage {
  account_id: string | number;
  conversation_id: string | number;
  direction: Direction;
  message_id: string;
  origin_id: string | null;
  stanza_id: string | null;
  body: string | null;
  sent_at: number;
  edited_at: number | null;
  retracted_at: number | null;
  reactions: Reactions;
  reacted_at: Record<string, string>;
  created_seq: string | number;
  seq: string | number;
}

function messageOfStored(m: StoredMessage): MessageRow {
  return {
    accountId: Number(m.account_id),
    conversationId: Number(m.conversation_id),
    direction: m.direction,
    messageId: m.message_id,
    originId: m.origin_id,
    stanzaId: m.stanza_id,
    body: m.body,
    sentAt: new Date(m.sent_at),
    editedAt: dateOf(m.edited_at),
    retractedAt: dateOf(m.retracted_at),
    reactions: m.reactions,
    reactedAt: m.reacted_at,
    createdSeq: Number(m.created_seq),
    seq: Number(m.seq),
  };
}

interface StoredModifier {
  account_id: string | number;
  conversation_id: string | number;
  target_id: string;
  kind: Modifier["kind"];
  direction: Direction;
  body: string | null;
  reacter: string | null;
  reactions: unknown;
  sent_at: number;
  seq: string | number;
}

interface EarlyModifier extends Modifier {
  /** targetKey of the message it names */
  key: string;
}

function modifierOfStored(e: StoredModifier): EarlyModifier {
  return {
    key: targetKey(e.account_id, e.conversation_id, e.target_id),
    kind: e.kind,
    direction: e.direction,
    reacter: e.reacter ?? "",
    body: e.body,
    reactions: Array.isArray(e.reactions) ? (e.reactions as string[]) : null,
    sentAt: new Date(e.sent_at),
    seq: Number(e.seq),
  };
}

const FOLDED_CONVERSATION = `c.account_id, c.id, c.peer_jid, c.unread_count,
  ${epochMs("c.read_at")} as read_at, ${epochMs("c.last_message_at")} as last_message_at,
  c.read_until, ${epochMs("c.read_until_at")} as read_until_at, c.peer_read_until,
  ${epochMs("c.peer_read_until_at")} as peer_read_until_at`;

interface StoredConversation {
  account_id: string | number;
  id: string | number;
  peer_jid: string;
  unread_count: number;
  read_at: number | null;
  last_message_at: number | null;
  read_until: string | null;
  read_until_at: number | null;
  peer_read_until: string | null;
  peer_read_until_at: number | null;
}

function conversationOfStored(c: StoredConversation) {
  const accountId = Number(c.account_id);
  return {
    accountId,
    peer: c.peer_jid,
    state: {
      accountId,
      id: Number(c.id),
      unreadCount: c.unread_count,
      readAt: dateOf(c.read_at),
      recount: false,
      readUntil: c.read_until,
      readUntilAt: dateOf(c.read_until_at),
      peerReadUntil: c.peer_read_until,
      peerReadUntilAt: dateOf(c.peer_read_until_at),
      version: 0,
      lastMessageAt: dateOf(c.last_message_at),
      updatedAt: null,
    },
  };
}

async function selectFoldedConversations(tx: Tx, pairs: { a: number; p: string }[]) {
  const rows = await run<StoredConversation>(
    tx,
    "select_folded_conversations",
    `select ${FOLDED_CONVERSATION}
      from json_to_recordset($1::json) as r(a bigint, p text)
      join conversations c on c.account_id = r.a and c.peer_jid = r.p`,
    pairs,
  );
  return rows.map(conversationOfStored);
}

/** Creates the conversations a batch starts (under the account locks, so none races it). */
async function createConversations(tx: Tx, pairs: { a: number; p: string }[]) {
  const created = run(
    tx,
    "create_conversations",
    `insert into conversations (account_id, peer_jid, version, last_event_seq)
      select r.a, r.p, 0, 0 from json_to_recordset($1::json) as r(a bigint, p text)
      on conflict do nothing`,
    pairs,
  );
  const selected = selectFoldedConversations(tx, pairs);
  await settled([created, selected]);
  return selected;
}

/** Writes what ingest changes about conversations; pinned, muted and archived stay untouched. */
function saveFoldedConversations(tx: Tx, convs: Set<ConversationState>): Promise<unknown> {
  if (convs.size === 0) return Promise.resolve();
  const records = [...convs].map((c) => ({
    a: c.accountId,
    i: c.id,
    v: c.version,
    u: c.unreadCount,
    ra: c.readAt?.toISOString(),
    ru: c.readUntil ?? undefined,
    rua: c.readUntilAt?.toISOString(),
    pr: c.peerReadUntil ?? undefined,
    pra: c.peerReadUntilAt?.toISOString(),
    lm: c.lastMessageAt?.toISOString(),
    ua: c.updatedAt?.toISOString(),
  }));
  // Stored times may be newer than the batch's (a settings change, a replayed older copy).
  return run(
    tx,
    "save_folded_conversations",
    `update conversations c set version = r.v, last_event_seq = r.v, unread_count = r.u,
       read_at = r.ra, read_until = r.ru, read_until_at = r.rua, peer_read_until = r.pr,
       peer_read_until_at = r.pra, last_message_at = greatest(c.last_message_at, r.lm),
       updated_at = greatest(c.updated_at, r.ua)
     from json_to_recordset($1::json) as r(a bigint, i bigint, v bigint, u integer, ra timestamptz,
       ru text, rua timestamptz, pr text, pra timestamptz, lm timestamptz, ua timestamptz)
     where c.account_id = r.a and c.id = r.i`,
    records,
  );
}

/** An events row as the insert's json takes it; absent fields are left out, not null. */
interface EventRecord {
  a: number;
  s: number;
  c: number;
  k: string;
  d: Direction;
  m?: string;
  o?: string;
  si?: string;
  t?: string;
  b?: string;
  /** moved to its own parameter by insertEvents */
  raw?: string;
  cid: string;
  f: string;
  fr?: string;
  x?: Record<string, unknown>;
  at: string;
  dk: string;
}

function eventRecord(side: Side, accountId: number, conversationId: number, seq: number) {
  const { event, copy } = side;
  const record: EventRecord = {
    a: accountId,
    s: seq,
    c: conversationId,
    k: event.kind,
    d: side.direction,
    m: event.messageId ?? undefined,
    o: event.originId ?? undefined,
    si: (side.direction === "out" ? copy.senderArchiveId : null) ?? undefined,
    t: (event.kind === "call" ? event.call?.callId : event.targetId) ?? undefined,
    b: event.body ?? undefined,
    raw: event.raw,
    cid: copy.copyId,
    f: event.from,
    fr: event.fromResource || undefined,
    at: copy.sentAt.toISOString(),
    dk: side.dedupeKey,
  };
  if (event.reactions || event.marker || event.call) {
    record.x = {};
    if (event.reactions) record.x.reactions = event.reactions;
    if (event.marker) record.x.marker = event.marker;
    if (event.call) record.x.call = event.call;
  }
  return record;
}

/** Joins the raw stanzas of insert_events' second parameter: XML allows no U+0001. */
const RAW_SEPARATOR = "\u0001";

/**
 * Appends the events. The payload is put together in SQL from plain fields: sent as nested json,
 * each one (the raw stanza, mostly) was parsed twice, which cost about a third of the insert.
 * Its keys are those readers know: raw, copy_id, from, from_resource, reactions, marker, call.
 *
 * The raw stanzas travel apart, joined by RAW_SEPARATOR: as json strings, their quotes escaped,
 * they were half of what PostgreSQL parsed, and the insert took 15% longer. A stanza that holds
 * the separator anyway (or is empty) stays in the json and leaves its slot empty.
 */
function insertEvents(tx: Tx, records: EventRecord[]): Promise<unknown> {
  const raws = records.map((record) => {
    const { raw } = record;
    if (raw === undefined || raw === "" || raw.includes(RAW_SEPARATOR)) return "";
    record.raw = undefined;
    return raw;
  });
  return preparedRows(tx, "insert_events", {
    sql: `insert into events (account_id, seq, conversation_id, kind, direction, message_id,
       origin_id, stanza_id, target_id, body, payload, sent_at, dedupe_key)
     select r.a, r.s, r.c, r.k, r.d, r.m, r.o, r.si, r.t, r.b,
       jsonb_strip_nulls(jsonb_build_object('raw', coalesce(r.raw, r.rv), 'copy_id', r.cid,
         'from', r.f, 'from_resource', r.fr)) || coalesce(r.x, '{}'),
       r.at, r.dk
     from rows from (
       json_to_recordset($1::json) as (a bigint, s bigint, c bigint, k text, d text, m text,
         o text, si text, t text, b text, raw text, cid text, f text, fr text, x jsonb,
         at timestamptz, dk text),
       unnest(string_to_array($2::text, chr(1)))
     ) as r(a, s, c, k, d, m, o, si, t, b, raw, cid, f, fr, x, at, dk, rv)`,
    params: [JSON.stringify(records), raws.join(RAW_SEPARATOR)],
  });
}

function accountOf(locked: Map<string, LockedAccount>, side: Side): LockedAccount {
  const account = locked.get(side.account);
  if (!account) throw new Error(`account ${side.account} was not locked`);
  return account;
}

/** What the unread count of a conversation is kept from. */
export interface ReadState {
  unreadCount: number;
  readAt: Date | null;
  lastMessageAt: Date | null;
  recount: boolean;
}

/**
 * The account read everything sent up to `at` (its own message, its displayed marker, the
 * message a request names). A time older than the one in place changes nothing. When no stored message is
 * newer, nothing is left unread; otherwise (ingest wrote newer messages first) those newer
 * ones are counted once the batch is written.
 */
export function markReadUntil(conv: ReadState, at: Date): void {
  if (conv.readAt && conv.readAt >= at) return;
  conv.readAt = at;
  if (!conv.lastMessageAt || conv.lastMessageAt <= at) conv.unreadCount = 0;
  else conv.recount = true;
}

/** Whether an incoming message counts as unread: not retracted, sent after the account read. */
function isUnread(
  conv: { readAt: Date | null },
  message: { sentAt: Date; retractedAt?: Date | null },
) {
  return !message.retractedAt && (!conv.readAt || message.sentAt > conv.readAt);
}

/**
 * Counts the unread messages of conversations again from the stored rows: the incoming ones
 * sent after read_at and not retracted. Sent after the writes of the same transaction, it sees
 * them. Returns the new counts.
 */
export async function recountUnread(
  tx: Tx,
  convs: { accountId: number; id: number }[],
): Promise<{ accountId: number; id: number; unreadCount: number }[]> {
  if (convs.length === 0) return [];
  const rows = await run<{ a: string | number; i: string | number; u: number }>(
    tx,
    "recount_unread",
    `update conversations c set unread_count = (
       select count(*) from messages m
       where m.account_id = c.account_id and m.conversation_id = c.id and m.direction = 'in'
         and m.retracted_at is null and (c.read_at is null or m.sent_at > c.read_at))
     from json_to_recordset($1::json) as r(a bigint, i bigint)
     where c.account_id = r.a and c.id = r.i
     returning c.account_id as a, c.id as i, c.unread_count as u`,
    convs.map((c) => ({ a: c.accountId, i: c.id })),
  );
  return rows.map((r) => ({ accountId: Number(r.a), id: Number(r.i), unreadCount: r.u }));
}

function maxDate(a: Date | null, b: Date): Date {
  return a && a > b ? a : b;
}

/** The key of the id a modifier names, in one conversation of one account. */
function targetKey(accountId: number | string, conversationId: number | string, id: string) {
  return `${accountId} ${conversationId} ${id}`;
}

interface MessageState {
  row: MessageRow;
  dirty: boolean;
  /** added by this batch, not loaded: the store may still hold a message with its id */
  added: boolean;
}

/** What a message did to the batch's messages: took a new id, replaced one, or lost to one. */
type Arrival = "new" | "replaced" | "kept";

interface Modifier {
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
  /** by key(…, messageId): each message of the batch once, as messages_key holds it */
  private readonly byId = new Map<string, MessageState>();
  /** by key(…, originId): the messages that carried that origin-id, when not their own id */
  private readonly byOrigin = new Map<string, MessageState[]>();
  /**
   * by targetKey: every edit, retraction and reaction known to
   * name that id, in seq order (those stored by earlier batches, then the batch's own), applied
   * or not: a message that arrives with the id, first or again, gets all of them.
   */
  private readonly history = new Map<string, Modifier[]>();

  constructor(private readonly tx: Tx) {}

  private key(accountId: number, conversationId: number, direction: Direction, id: string) {
    return `${accountId} ${conversationId} ${direction} ${id}`;
  }

  /** Takes the stored messages the batch's modifiers target and the modifiers stored early. */
  load(stored: MessageRow[], early: EarlyModifier[]): void {
    for (const row of stored) this.remember(row, false);
    for (const { key, ...modifier } of early) this.record(key, modifier);
  }

  /**
   * The message a modifier's id names: the one with that id, else the newest that carries it
   * as its origin-id now (an id used again may have replaced the message that carried it).
   * Whatever order the store returned them in, the choice is the same.
   */
  private find(accountId: number, conversationId: number, direction: Direction, id: string) {
    const key = this.key(accountId, conversationId, direction, id);
    const own = this.byId.get(key);
    if (own) return own;
    let newest: MessageState | undefined;
    for (const state of this.byOrigin.get(key) ?? []) {
      if (state.row.originId !== id) continue;
      if (!newest || state.row.createdSeq > newest.row.createdSeq) newest = state;
    }
    return newest;
  }

  private remember(row: MessageRow, added: boolean): { state: MessageState; arrival: Arrival } {
    const key = this.key(row.accountId, row.conversationId, row.direction, row.messageId);
    let state = this.byId.get(key);
    let arrival: Arrival = "new";
    if (state) {
      // A message id used again (clients may reuse one): the message sent later replaces the
      // other (of two sent at once, the one written later), whatever order they are written
      // in, as the upsert does across batches; the row keeps its created_seq.
      if (state.row.sentAt > row.sentAt) return { state, arrival: "kept" };
      state.row = {
        ...row,
        stanzaId: row.stanzaId ?? state.row.stanzaId,
        createdSeq: state.row.createdSeq,
      };
      state.dirty ||= added;
      arrival = "replaced";
    } else {
      state = { row, dirty: added, added };
      this.byId.set(key, state);
    }
    if (row.originId && row.originId !== row.messageId) {
      const originKey = this.key(row.accountId, row.conversationId, row.direction, row.originId);
      const carriers = this.byOrigin.get(originKey) ?? [];
      if (!carriers.includes(state)) carriers.push(state);
      this.byOrigin.set(originKey, carriers);
    }
    return { state, arrival };
  }

  private record(key: string, modifier: Modifier) {
    const list = this.history.get(key) ?? [];
    list.push(modifier);
    this.history.set(key, list);
  }

  /**
   * Stores a new message, or a message whose id is used again, and applies every modifier that
   * named its ids so far: that is what makes the result the same however copies are batched (a
   * later batch finds them all as stored modifiers). Returns its state, and what it did to a
   * message with its id that the batch knows (one stored earlier it may still replace, or lose
   * to: see save).
   */
  addMessage(
    accountId: number,
    conversationId: number,
    side: Side,
    seq: number,
  ): { row: MessageRow; arrival: Arrival } {
    const { event, copy } = side;
    const messageId = messageKeyOf(side);
    const { state, arrival } = this.remember(
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
        reactedAt: {},
        createdSeq: seq,
        seq,
      },
      true,
    );
    if (arrival === "kept") return { row: state.row, arrival };
    const byId = this.history.get(targetKey(accountId, conversationId, messageId));
    const byOrigin =
      event.originId && event.originId !== messageId
        ? this.history.get(targetKey(accountId, conversationId, event.originId))
        : undefined;
    // Most messages were named by nothing yet.
    const named = byOrigin ? [...(byId ?? []), ...byOrigin].sort((x, y) => x.seq - y.seq) : byId;
    for (const modifier of named ?? []) {
      // An edit or retraction only ever comes from the message's own sender.
      if (modifier.kind !== "reaction" && modifier.direction !== side.direction) continue;
      if (!namesMessage(modifier, state.row)) continue;
      applyModifier(state.row, modifier, Math.max(seq, modifier.seq));
    }
    return { row: state.row, arrival };
  }

  /**
   * Applies an edit, retraction or reaction to its message, and keeps it for a message that
   * arrives with that id later in the batch. Returns what the target was before, when known.
   */
  modify(
    accountId: number,
    conversationId: number,
    side: Side,
    seq: number,
  ): { sentAt: Date; retractedAt?: Date | null } | null {
    const { event, copy } = side;
    const target = event.targetId;
    if (!target) return null;
    const kind = event.kind as Modifier["kind"];
    const modifier: Modifier = {
      kind,
      direction: side.direction,
      reacter: event.from,
      body: event.body,
      reactions: event.reactions,
      sentAt: copy.sentAt,
      seq,
    };
    this.record(targetKey(accountId, conversationId, target), modifier);
    for (const direction of candidateDirections(kind, side.direction)) {
      const state = this.find(accountId, conversationId, direction, target);
      // Sent before the message with this id: it named an earlier one, replaced since.
      if (!state || !namesMessage(modifier, state.row)) continue;
      const before = { sentAt: state.row.sentAt, retractedAt: state.row.retractedAt };
      applyModifier(state.row, modifier, seq);
      state.dirty = true;
      return before;
    }
    return null;
  }

  /**
   * Writes the changed messages. Resolves to the conversations where an incoming message met
   * one with its id stored by an earlier batch that this one did not load (a message id used
   * again), and replaced it or lost to it: their unread count must be counted again.
   */
  save(): Promise<{ accountId: number; id: number }[]> {
    const dirty = [...this.byId.values()].filter((s) => s.dirty);
    if (dirty.length === 0) return Promise.resolve([]);
    const records = dirty.map(({ row }) => ({
      a: row.accountId,
      c: row.conversationId,
      d: row.direction,
      m: row.messageId,
      o: row.originId ?? undefined,
      si: row.stanzaId ?? undefined,
      b: row.body ?? undefined,
      at: row.sentAt.toISOString(),
      ea: row.editedAt?.toISOString(),
      ra: row.retractedAt?.toISOString(),
      re: row.reactions && Object.keys(row.reactions).length > 0 ? row.reactions : undefined,
      rt: row.reactedAt && Object.keys(row.reactedAt).length > 0 ? row.reactedAt : undefined,
      cs: row.createdSeq,
      s: row.seq,
    }));
    return run<{ a: string | number; c: string | number; d: Direction; m: string }>(
      this.tx,
      "upsert_messages",
      UPSERT_MESSAGES,
      records,
    ).then((rows) => {
      const met = new Map<string, { accountId: number; id: number }>();
      for (const r of rows) {
        const [accountId, id] = [Number(r.a), Number(r.c)];
        if (r.d === "in" && this.byId.get(this.key(accountId, id, r.d, r.m))?.added) {
          met.set(`${accountId} ${id}`, { accountId, id });
        }
      }
      return [...met.values()];
    });
  }
}

/**
 * On conflict, each column takes the value of the message sent later: the row written now,
 * or the stored one when that was sent later (a message id used again, written out of order).
 */
const CONFLICT_SET = Object.entries({
  origin_id: "excluded.origin_id",
  stanza_id: "coalesce(excluded.stanza_id, messages.stanza_id)",
  body: "excluded.body",
  sent_at: "excluded.sent_at",
  edited_at: "excluded.edited_at",
  retracted_at: "excluded.retracted_at",
  reactions: "excluded.reactions",
  reacted_at: "excluded.reacted_at",
  seq: "excluded.seq",
  view: messageJsonSql({
    ...messageColumnsOf("excluded"),
    stanzaId: "coalesce(excluded.stanza_id, messages.stanza_id)",
  }),
})
  .map(([column, value]) => {
    return `${column} = case when excluded.sent_at >= messages.sent_at then ${value}
      else messages.${column} end`;
  })
  .join(",\n     ");

/**
 * Writes the folded messages with their API rendering (`view`), which is always rendered from
 * the row's final values: on conflict the stored stanza id may be the one kept. Returns the
 * rows that met a stored one (every conflict updates, so each shows): the stored messages the
 * batch loaded and changed, and any message whose id was used again, which met one the batch
 * did not load.
 */
const UPSERT_MESSAGES = `with saved as (insert into messages (account_id, conversation_id,
     direction, message_id, origin_id, stanza_id, body, sent_at, edited_at, retracted_at,
     reactions, reacted_at, created_seq, seq, view)
   select r.a, r.c, r.d, r.m, r.o, r.si, r.b, r.at, r.ea, r.ra, coalesce(r.re, '{}'),
     coalesce(r.rt, '{}'), r.cs, r.s,
     ${messageJsonSql({
       messageId: "r.m",
       stanzaId: "r.si",
       direction: "r.d",
       body: "r.b",
       sentAt: "r.at",
       editedAt: "r.ea",
       retractedAt: "r.ra",
       reactions: "coalesce(r.re, '{}')",
       seq: "r.s",
     })}
   from json_to_recordset($1::json) as r(a bigint, c bigint, d text, m text, o text,
     si text, b text, at timestamptz, ea timestamptz, ra timestamptz, re jsonb, rt jsonb,
     cs bigint, s bigint)
   on conflict (account_id, conversation_id, direction, message_id) do update set
     ${CONFLICT_SET}
   returning account_id, conversation_id, direction, message_id, xmax <> '0'::xid as met)
   select account_id as a, conversation_id as c, direction as d, message_id as m from saved
   where met`;

/**
 * Whether a modifier can name this message: one sent before the message named an earlier
 * message with the same id (clients may use an id again), which this one replaced.
 */
function namesMessage(modifier: Modifier, row: MessageRow): boolean {
  return modifier.sentAt >= row.sentAt;
}

/** Reactions may target either side's message (the peer's, usually); edits only one's own. */
function candidateDirections(kind: Modifier["kind"], direction: Direction): Direction[] {
  const opposite: Direction = direction === "out" ? "in" : "out";
  return kind === "reaction" ? [opposite, direction] : [direction];
}

function isModifier(kind: string): kind is Modifier["kind"] {
  return (MODIFIER_KINDS as readonly string[]).includes(kind);
}

function applyModifier(row: MessageRow, modifier: Modifier, seq: number): void {
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
      // XEP-0444: each reaction replaces its sender's set; of two, the later by server time
      // wins, whichever was written first.
      const at = modifier.sentAt.toISOString();
      const current = row.reactedAt?.[modifier.reacter];
      if (current !== undefined && current > at) return;
      row.reactedAt = { ...row.reactedAt, [modifier.reacter]: at };
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
