import {
  and,
  eq,
  getTableColumns,
  gt,
  inArray,
  isNull,
  or,
  type Placeholder,
  type SQL,
  sql,
} from "drizzle-orm";
import type { CallSignal } from "../ingest/parse.js";
import type { Db, Tx } from "./db.js";
import { rowsOf } from "./json-rows.js";
import { type CallState, calls } from "./schema/calls.js";
import { events } from "./schema/events.js";

export type CallRow = typeof calls.$inferSelect;
type CallInsert = typeof calls.$inferInsert;

export interface CallUpdate {
  accountId: number;
  conversationId: number;
  peer: string;
  /** of the signal, for this account: `out` = sent by this account's own device */
  direction: "in" | "out";
  signal: CallSignal;
  senderResource: string | null;
  senderIsAccount: boolean;
  /** server receive time of the signal: never the sender's clock */
  at: Date;
  seq: number;
}

export type EndReason = "retracted" | "rejected" | "missed" | "finished" | "migrated" | "expired";

/** A call only moves forward: a late `propose` after a replayed `retract` cannot revive it. */
const RANK: Record<CallState, number> = {
  proposed: 0,
  ringing: 1,
  accepted: 2,
  finished: 3,
  rejected: 3,
  retracted: 3,
  missed: 3,
};

export function isTerminal(state: CallState): boolean {
  return RANK[state] === 3;
}

/**
 * The stored calls that signals for these (account, call id) keys refer to, those that migrated
 * to them, and those they migrated to.
 */
export async function loadCalls(
  tx: Tx,
  keys: { accountId: number; callId: string }[],
): Promise<CallRow[]> {
  if (keys.length === 0) return [];
  const rows = await loadCallsQuery(tx, keys).prepare("select_calls").execute();
  // A call may be found by more than one lookup.
  return [...new Map(rows.map((r) => [`${r.accountId} ${r.callId}`, r])).values()];
}

/**
 * loadCalls' statement: for each key, index lookups of its call (calls_account_call), of the
 * calls that migrated to it (calls_account_migrated_to) and of the call it migrated to. Each
 * lookup is a lateral subquery the planner may not flatten (`offset 0`): joined as sets, or
 * with `or`, the keys made it read the whole table.
 */
export function loadCallsQuery(db: Db | Tx, keys: { accountId: number; callId: string }[]) {
  const json = JSON.stringify(keys.map((k) => ({ a: k.accountId, i: k.callId })));
  const each = (lookup: SQL) =>
    sql`select x.* from json_to_recordset(${json}::json) as r(a bigint, i text)
      cross join lateral (select c.* from ${calls} c
        where c.account_id = r.a and ${lookup} offset 0) x`;
  return db.select(LOOKED_UP_COLUMNS).from(sql`(${each(sql`c.call_id = r.i`)}
    union all ${each(sql`c.migrated_to = r.i and c.migrated_to is not null`)}
    union all ${each(sql`c.call_id = (select m.migrated_to from ${calls} m
      where m.account_id = r.a and m.call_id = r.i)`)}) as ${calls}`);
}

/** The table's columns, read as the table's, from loadCallsQuery's rows under its name. */
const LOOKED_UP_COLUMNS = Object.fromEntries(
  Object.entries(getTableColumns(calls)).map(([key, column]) => [
    key,
    sql`${sql.identifier("calls")}.${sql.identifier(column.name)}`.mapWith(column),
  ]),
) as {
  [K in keyof typeof calls.$inferSelect]:
    | SQL.Aliased<(typeof calls.$inferSelect)[K]>
    | SQL<(typeof calls.$inferSelect)[K]>;
};

/**
 * Folds XEP-0353 signals into each account's call rows (`existing`, from loadCalls) and writes
 * the changed ones. Idempotent (a signal applied twice leaves the same row) and order-tolerant
 * (forward moves only, but for an answer and a reject, where the one sent first counts, and a
 * finish, which outranks both; missing facts are filled in late).
 */
export async function saveCallSignals(
  tx: Tx,
  existing: CallRow[],
  updates: CallUpdate[],
  timing: { ringTimeoutMs: number; maxDurationMs: number },
): Promise<void> {
  if (updates.length === 0) return;
  const rows = new Map<string, CallInsert>();
  /** `${accountId} ${newId}` → the calls that migrated to newId (a forgery may name it too) */
  const migratedFrom = new Map<string, CallInsert[]>();
  const migrated = (key: string, from: CallInsert) => {
    const list = migratedFrom.get(key) ?? [];
    if (!list.includes(from)) list.push(from);
    migratedFrom.set(key, list);
  };
  for (const r of existing) {
    rows.set(`${r.accountId} ${r.callId}`, r);
    if (r.migratedTo) migrated(`${r.accountId} ${r.migratedTo}`, r);
  }
  const dirty = new Set<string>();

  for (const update of updates) {
    const key = `${update.accountId} ${update.signal.callId}`;
    let row = rows.get(key);
    if (!row) {
      row = newCall(update);
      rows.set(key, row);
    }
    // A session is between two parties: a signal from anyone else naming its id (another
    // conversation's session, or a forgery) leaves it alone. It stays in the event log.
    if (row.peerJid !== update.peer) continue;
    transition(row, update, timing.ringTimeoutMs, timing.maxDurationMs);
    if (update.signal.action === "finish" && update.signal.migratedTo) {
      migrated(`${update.accountId} ${update.signal.migratedTo}`, row);
    }
    row.seq = Math.max(row.seq, update.seq);
    dirty.add(key);
  }
  // XEP-0353 migration: the new session continues an answered call, so the old session's answer
  // is its answer too, under the rules of any answer (the first counts; a reject or retract
  // sent after it leaves the call on), whichever of the two sessions' signals were written or
  // batched first. It changes with the old session's signal, so it takes that seq (a delta
  // sync shows it). Until nothing changes: a session may migrate again.
  for (let changed = true; changed; ) {
    changed = false;
    for (const [key, previousCalls] of migratedFrom) {
      const row = rows.get(key);
      if (!row) continue;
      for (const previous of previousCalls) {
        if (!previous.answeredAt || previous.peerJid !== row.peerJid) continue;
        const before = `${row.state} ${row.answeredAt?.getTime()} ${row.answeredBy}`;
        transition(
          row,
          {
            accountId: row.accountId,
            conversationId: row.conversationId,
            peer: row.peerJid,
            // the old session's answer, as the callee's device sent it
            direction: row.direction === "in" ? "out" : "in",
            signal: {
              action: "proceed",
              callId: row.callId,
              media: [],
              reason: null,
              migratedTo: null,
            },
            senderResource: previous.answeredBy ?? null,
            senderIsAccount: row.direction === "in",
            at: previous.answeredAt,
            seq: previous.seq,
          },
          timing.ringTimeoutMs,
          timing.maxDurationMs,
        );
        if (`${row.state} ${row.answeredAt?.getTime()} ${row.answeredBy}` === before) continue;
        row.seq = Math.max(row.seq, previous.seq);
        dirty.add(key);
        changed = true;
      }
    }
  }

  const changed = [...dirty].map((k) => rows.get(k)).filter((r): r is CallInsert => !!r);
  if (changed.length === 0) return;
  await tx
    .insert(calls)
    .select(rowsOf(calls, changed))
    .onConflictDoUpdate({
      target: [calls.accountId, calls.callId],
      set: {
        media: sql`excluded.media`,
        state: sql`excluded.state`,
        proposedAt: sql`excluded.proposed_at`,
        updatedAt: sql`excluded.updated_at`,
        answeredAt: sql`excluded.answered_at`,
        answeredBy: sql`excluded.answered_by`,
        endedAt: sql`excluded.ended_at`,
        endReason: sql`excluded.end_reason`,
        expiresAt: sql`excluded.expires_at`,
        migratedTo: sql`excluded.migrated_to`,
        direction: sql`excluded.direction`,
        seq: sql`excluded.seq`,
      },
    })
    .prepare("upsert_calls")
    .execute();
}

function newCall(update: CallUpdate): CallInsert {
  return {
    accountId: update.accountId,
    callId: update.signal.callId,
    conversationId: update.conversationId,
    peerJid: update.peer,
    // Until a propose says who called, the first signal's sender guess is refined below.
    direction: callDirection(update),
    media: [],
    state: "proposed",
    proposedAt: null,
    updatedAt: update.at,
    seq: update.seq,
  };
}

/** Who placed the call, as this account sees it, judged from one signal. */
function callDirection(update: CallUpdate): "in" | "out" {
  const callerSends = ["propose", "retract"].includes(update.signal.action);
  const calleeSends = ["ringing", "proceed", "accept", "reject"].includes(update.signal.action);
  if (callerSends) return update.senderIsAccount ? "out" : "in";
  if (calleeSends) return update.senderIsAccount ? "in" : "out";
  return update.senderIsAccount ? "out" : "in";
}

function moveTo(row: CallInsert, state: CallState): boolean {
  if (RANK[state] <= RANK[row.state]) return false;
  row.state = state;
  return true;
}

/** Ended by a reject or a retract, which an earlier answer or any finish outranks. */
function declined(row: CallInsert): boolean {
  return row.state === "rejected" || row.state === "retracted";
}

/** Ended by a reject or a retract sent after `at`. */
function declinedAfter(row: CallInsert, at: Date): boolean {
  return declined(row) && !!row.endedAt && row.endedAt > at;
}

function end(row: CallInsert, state: CallState, reason: EndReason, at: Date): void {
  if (isTerminal(row.state)) return;
  row.state = state;
  row.endedAt = at;
  row.endReason = reason;
}

function transition(row: CallInsert, u: CallUpdate, ringTimeoutMs: number, maxDurationMs: number) {
  const { signal, at } = u;
  if (at > (row.updatedAt ?? at)) row.updatedAt = at;
  switch (signal.action) {
    case "propose":
      row.direction = callDirection(u);
      row.proposedAt = row.proposedAt && row.proposedAt < at ? row.proposedAt : at;
      if (signal.media.length > 0) row.media = signal.media;
      if (row.state === "proposed" || row.state === "ringing") {
        row.expiresAt = new Date(row.proposedAt.getTime() + ringTimeoutMs);
      }
      return;
    case "ringing":
      moveTo(row, "ringing");
      return;
    case "proceed":
    case "accept":
      // (see reject) Written after a reject or retract sent later: the answer counts.
      if (declinedAfter(row, at)) {
        row.state = "ringing";
        row.endedAt = null;
        row.endReason = null;
      }
      if (moveTo(row, "accepted")) {
        row.answeredAt = at;
        row.answeredBy = u.senderResource;
        row.expiresAt = new Date(at.getTime() + maxDurationMs);
      } else if (!row.answeredAt || row.answeredAt > at) {
        // The first answer counts (two devices may answer), whichever is written first. On an
        // ended call it is a fact filled in late: after a finish written before it, or kept,
        // unshown (effectiveCall), on a call a reject or retract sent before it ended, since a
        // finish may yet say the call took place.
        if (row.state !== "accepted" && !isTerminal(row.state)) return;
        row.answeredAt = at;
        row.answeredBy = u.senderResource;
        if (row.state === "accepted") row.expiresAt = new Date(at.getTime() + maxDurationMs);
      }
      return;
    case "reject":
    case "retract": {
      // Of an answer and a reject (another device of the callee) or a retract (the caller
      // hanging up), the one sent first counts, whichever is written first: sent after the
      // answer, they leave the call on (a retract then is a client bug; the call goes on until
      // finish); sent before it, they end it. A finish outranks all (below), so a revived call
      // is never one that had already finished.
      if (row.state === "accepted" && row.answeredAt && row.answeredAt > at) {
        row.state = "ringing";
      }
      if (row.state === "accepted") return;
      const ended = signal.action === "reject" ? "rejected" : "retracted";
      // Of a reject and a retract, too, the one sent first ends the call.
      if (declinedAfter(row, at)) row.state = "ringing";
      end(row, ended, ended, at);
      return;
    }
    case "finish":
      if (signal.migratedTo) row.migratedTo = signal.migratedTo;
      // A finish says the session was set up: a reject or retract it met lost, whatever the
      // order they were written in.
      if (declined(row)) row.state = "ringing";
      end(row, "finished", signal.migratedTo ? "migrated" : "finished", at);
      return;
  }
}

/** The state a phone must see now: an unanswered call past its ring timeout is missed. */
export function effectiveCall(row: CallRow, now: Date): CallRow {
  let call = row;
  // An answer kept on a call that ended without it (see transition) is not shown.
  if (call.answeredAt && call.state !== "accepted" && call.state !== "finished") {
    call = { ...call, answeredAt: null, answeredBy: null };
  }
  if (!call.expiresAt || call.expiresAt > now || isTerminal(call.state)) return call;
  if (call.state === "accepted") {
    return { ...call, state: "finished", endedAt: call.expiresAt, endReason: "expired" };
  }
  return { ...call, state: "missed", endedAt: call.expiresAt, endReason: "missed" };
}

/**
 * Calls a phone must act on: incoming calls still ringing, and accepted calls not yet finished.
 * Expiry is judged here, at read time, so no timer is needed for correctness.
 */
export async function activeCalls(db: Db | Tx, accountId: number, now: Date): Promise<CallRow[]> {
  const rows = await db
    .select()
    .from(calls)
    .where(activeCallCandidates(accountId, now))
    .orderBy(calls.proposedAt, calls.callId);
  return activeOf(rows);
}

/** The calls that may still be active: not ended and not expired (`activeOf` decides). */
export function activeCallCandidates(
  accountId: number | Placeholder,
  /** a Date, or a placeholder filled with an ISO string */
  now: Date | Placeholder,
): SQL | undefined {
  return and(
    eq(calls.accountId, accountId),
    inArray(calls.state, ["proposed", "ringing", "accepted"]),
    // gt() encodes the Date through the column; a bare Date in sql`` breaks postgres.js.
    or(isNull(calls.expiresAt), gt(calls.expiresAt, now)),
  );
}

/**
 * Of the candidates, by offer time: what rings for this account (incoming, tie-break winners)
 * and what is under way.
 */
export function activeOf(candidates: CallRow[]): CallRow[] {
  return withoutTieBreakLosers(candidates).filter(
    (r) => r.state === "accepted" || (r.direction === "in" && r.proposedAt !== null),
  );
}

/**
 * XEP-0353 tie-break: when both parties propose at once, the session with the lower id wins and
 * the other is retracted by the clients. Until that retraction arrives, only the winner rings.
 */
export function withoutTieBreakLosers(rows: CallRow[]): CallRow[] {
  const winner = new Map<string, string>();
  for (const r of rows) {
    if (r.state === "accepted") continue;
    const best = winner.get(r.peerJid);
    if (best === undefined || r.callId < best) winner.set(r.peerJid, r.callId);
  }
  return rows.filter((r) => r.state === "accepted" || winner.get(r.peerJid) === r.callId);
}

export async function findCall(
  db: Db,
  accountId: number,
  callId: string,
): Promise<CallRow | undefined> {
  const [row] = await db
    .select()
    .from(calls)
    .where(and(eq(calls.accountId, accountId), eq(calls.callId, callId)));
  return row;
}

export interface CallSignalRecord {
  seq: number;
  direction: "in" | "out";
  signal: CallSignal;
  fromResource: string | null;
  at: Date;
}

/** The signals of one call as this account saw them, in order (the call's event log). */
export async function callHistory(
  db: Db,
  accountId: number,
  call: CallRow,
): Promise<CallSignalRecord[]> {
  const rows = await db
    .select({
      seq: events.seq,
      direction: events.direction,
      payload: events.payload,
      sentAt: events.sentAt,
    })
    .from(events)
    .where(
      and(
        eq(events.accountId, accountId),
        eq(events.conversationId, call.conversationId),
        eq(events.kind, "call"),
        eq(events.targetId, call.callId),
      ),
    )
    .orderBy(events.seq);
  return rows.flatMap((r) => {
    const signal = r.payload.call as CallSignal | undefined;
    if (!signal) return [];
    const resource = r.payload.from_resource;
    return [
      {
        seq: r.seq,
        direction: r.direction,
        signal,
        fromResource: typeof resource === "string" ? resource : null,
        at: r.sentAt,
      },
    ];
  });
}
