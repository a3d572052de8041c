import { and, asc, eq, isNull, lt, lte, notInArray, or, sql } from "drizzle-orm";
import type { Db } from "./db.js";
import { calls } from "./schema/calls.js";
import { pushDeliveries } from "./schema/push-deliveries.js";

export interface PruneDeliveries {
  /** rows claimed before this are looked at */
  claimedBefore: Date;
  /** now: a call that expired by then rings no more */
  now: Date;
  /** the most rows one pass deletes */
  limit: number;
}

/**
 * Deletes, oldest first and at most `limit`, the push_deliveries rows claimed before
 * `claimedBefore` whose call rings no more: ended, expired, or gone. A call never rings again
 * once so (calls.ts moves a call only forward), so such a row can stop no push. Returns how
 * many rows it deleted.
 */
export async function pruneDeliveries(db: Db, o: PruneDeliveries): Promise<number> {
  return (await pruneDeliveriesQuery(db, o)).length;
}

/**
 * pruneDeliveries' statement: the oldest rows through push_deliveries_delivered_at, each one's
 * call through an index of calls, and the rows deleted by their address.
 */
export function pruneDeliveriesQuery(db: Db, o: PruneDeliveries) {
  const stale = db
    .select({ row: sql`${pushDeliveries}.ctid` })
    .from(pushDeliveries)
    .leftJoin(
      calls,
      and(eq(calls.accountId, pushDeliveries.accountId), eq(calls.callId, pushDeliveries.callId)),
    )
    .where(
      and(
        lt(pushDeliveries.deliveredAt, o.claimedBefore),
        or(
          isNull(calls.callId),
          notInArray(calls.state, ["proposed", "ringing"]),
          lte(calls.expiresAt, o.now),
        ),
      ),
    )
    .orderBy(asc(pushDeliveries.deliveredAt))
    .limit(o.limit);
  return (
    db
      .delete(pushDeliveries)
      // By row address (a TID scan): matched by key instead, PostgreSQL may read the whole
      // table to find the few rows, and the builder has no words for ctid.
      .where(sql`ctid = any(array(${stale}))`)
      .returning({ callId: pushDeliveries.callId })
  );
}
