import { sql } from "drizzle-orm";
import { bigint, index, pgTable, primaryKey, text, timestamp } from "drizzle-orm/pg-core";

/**
 * Which call was VoIP-pushed to which device. iOS punishes a VoIP push that does not ring, so a
 * call is claimed here before it is sent and never pushed to the same device twice. A row
 * matters only while its call may ring: store upkeep prunes the others, oldest first.
 */
export const pushDeliveries = pgTable(
  "push_deliveries",
  {
    deviceId: text("device_id").notNull(),
    callId: text("call_id").notNull(),
    accountId: bigint("account_id", { mode: "number" }).notNull(),
    deliveredAt: timestamp("delivered_at", { withTimezone: true }).notNull().default(sql`now()`),
  },
  (t) => [
    primaryKey({ columns: [t.deviceId, t.callId] }),
    index("push_deliveries_delivered_at").on(t.deliveredAt),
  ],
);
