import { eq, type SQL, sql } from "drizzle-orm";
import type { Tx } from "./db.js";
import { accounts } from "./schema/accounts.js";
import { calls } from "./schema/calls.js";
import { conversations } from "./schema/conversations.js";
import { events } from "./schema/events.js";
import { messages } from "./schema/messages.js";
import { pushDeliveries } from "./schema/push-deliveries.js";
import { pushDevices } from "./schema/push-devices.js";
import { tokens } from "./schema/tokens.js";

/**
 * Deletes everything syncside holds for one account whose row the transaction has locked: its
 * events, conversations, messages, calls, tokens and push devices. The account row stays (seqs
 * are never reused): the erase takes a seq of its own (erased_seq), before which every position
 * is expired, and notes `erasedAt`, before which ingest stores nothing more for the account.
 * The caller announces the account (notifyAccounts), so its held long-polls answer now.
 */
export async function eraseMirror(tx: Tx, accountId: number, erasedAt: SQL): Promise<void> {
  await tx
    .update(accounts)
    .set({
      lastSeq: sql`${accounts.lastSeq} + 1`,
      erasedSeq: sql`${accounts.lastSeq} + 1`,
      erasedAt,
    })
    .where(eq(accounts.id, accountId));
  await tx.delete(pushDeliveries).where(eq(pushDeliveries.accountId, accountId));
  await tx.delete(pushDevices).where(eq(pushDevices.accountId, accountId));
  await tx.delete(tokens).where(eq(tokens.accountId, accountId));
  await tx.delete(calls).where(eq(calls.accountId, accountId));
  await tx.delete(messages).where(eq(messages.accountId, accountId));
  await tx.delete(events).where(eq(events.accountId, accountId));
  await tx.delete(conversations).where(eq(conversations.accountId, accountId));
}
