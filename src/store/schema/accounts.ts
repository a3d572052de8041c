import { sql } from "drizzle-orm";
import { bigint, pgTable, text, timestamp } from "drizzle-orm/pg-core";

/** A local ejabberd user; `last_seq` is its gap-free event counter (locked per batch). */
export const accounts = pgTable("accounts", {
  id: bigint("id", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
  jid: text("jid").notNull().unique(),
  lastSeq: bigint("last_seq", { mode: "number" }).notNull().default(0),
  /**
   * The seq an admin erase of the account's mirror took (0: never erased). Positions before it
   * are expired, so a phone that synced before the erase starts over instead of keeping what
   * was erased.
   */
  erasedSeq: bigint("erased_seq", { mode: "number" }).notNull().default(0),
  /** when the mirror was last erased: ingest skips copies sent before, should it read them again */
  erasedAt: timestamp("erased_at", { withTimezone: true }),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().default(sql`now()`),
});
