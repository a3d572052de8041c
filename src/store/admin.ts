import { and, asc, eq, gt, ilike, inArray, isNotNull, isNull, or, sql } from "drizzle-orm";
import type { CallRow } from "./calls.js";
import { type Db, queryRows } from "./db.js";
import { eraseMirror } from "./erase.js";
import { notifyAccounts } from "./events.js";
import { accounts } from "./schema/accounts.js";
import { calls } from "./schema/calls.js";
import { conversations } from "./schema/conversations.js";
import { events } from "./schema/events.js";

// Queries across accounts, for the admin API only: no account route may use them.

export interface AccountSummary {
  id: number;
  jid: string;
  lastSeq: number;
  createdAt: Date;
  conversations: number;
  /** server time of the account's latest event */
  lastActivityAt: Date | null;
}

/** `%` and `_` in a search are literal characters, not wildcards. */
function likeEscape(text: string): string {
  return text.replace(/[\\%_]/g, "\\$&");
}

/** Accounts by JID, after a JID (cursor) and optionally only those containing `q`. */
export async function listAccounts(
  db: Db,
  options: { afterJid: string | null; q: string | undefined; limit: number },
): Promise<AccountSummary[]> {
  return (
    db
      .select({
        id: accounts.id,
        jid: accounts.jid,
        lastSeq: accounts.lastSeq,
        createdAt: accounts.createdAt,
        conversations: db.$count(conversations, eq(conversations.accountId, accounts.id)),
        lastActivityAt: events.sentAt,
      })
      .from(accounts)
      // The event at last_seq is the newest: one primary-key probe instead of a max() per account.
      .leftJoin(events, and(eq(events.accountId, accounts.id), eq(events.seq, accounts.lastSeq)))
      .where(
        and(
          options.afterJid !== null ? gt(accounts.jid, options.afterJid) : undefined,
          options.q ? ilike(accounts.jid, `%${likeEscape(options.q)}%`) : undefined,
        ),
      )
      .orderBy(asc(accounts.jid))
      .limit(options.limit)
  );
}

export async function findAccountId(db: Db, jid: string): Promise<number | null> {
  const [row] = await db.select({ id: accounts.id }).from(accounts).where(eq(accounts.jid, jid));
  return row?.id ?? null;
}

export interface ServerCall {
  jid: string;
  call: CallRow;
}

/**
 * Every account's calls still in flight, by (account id, call id). Unlike the per-account
 * activeCalls, the caller's side is listed too: an operator sees both rows of a local call.
 */
export async function activeCallsOnServer(
  db: Db,
  options: { after: { accountId: number; callId: string } | null; limit: number; now: Date },
): Promise<ServerCall[]> {
  const { after } = options;
  const rows = await db
    .select({ jid: accounts.jid, call: calls })
    .from(calls)
    .innerJoin(accounts, eq(accounts.id, calls.accountId))
    .where(
      and(
        inArray(calls.state, ["proposed", "ringing", "accepted"]),
        or(isNull(calls.expiresAt), gt(calls.expiresAt, options.now)),
        // Without a propose the call's start is unknown and it would never expire.
        or(eq(calls.state, "accepted"), isNotNull(calls.proposedAt)),
        after
          ? or(
              gt(calls.accountId, after.accountId),
              and(eq(calls.accountId, after.accountId), gt(calls.callId, after.callId)),
            )
          : undefined,
      ),
    )
    .orderBy(asc(calls.accountId), asc(calls.callId))
    .limit(options.limit);
  return rows;
}

// The admin view shows the position ingest would resume from: the lowest of its lanes'.
export { readCheckpoint } from "./checkpoint.js";

/**
 * Deletes everything syncside holds for one account, in one transaction under the account's row
 * lock, the lock ingest takes before it writes, so no batch can land half before and half after.
 * The account row itself stays: seqs are never reused. The erase takes a seq of its own
 * (erased_seq), before which every position is expired, so a phone that synced before it starts
 * over; and it notes its time (erased_at, taken once the lock is held, so after every batch the
 * erase waited for), before which ingest stores nothing for the account, should it read the
 * archive's look-back again. Null for an unknown JID.
 */
export async function eraseAccount(db: Db, jid: string): Promise<{ accountId: number } | null> {
  return db.transaction(async (tx) => {
    // Row locks are not expressible in the builder's select for PGlite and postgres.js alike.
    const [row] = await queryRows<{ id: string | number }>(
      tx,
      sql`select id from ${accounts} where ${accounts.jid} = ${jid} for update`,
    );
    if (!row) return null;
    const accountId = Number(row.id);
    await eraseMirror(tx, accountId, sql`clock_timestamp()`);
    // Its held long-polls answer now (their positions expired), not at their deadlines.
    await notifyAccounts(tx, [accountId]);
    return { accountId };
  });
}
