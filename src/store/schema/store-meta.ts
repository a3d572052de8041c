import { sql } from "drizzle-orm";
import { integer, pgTable, text, timestamp } from "drizzle-orm/pg-core";

/**
 * One row, created at first start: the store's epoch (positions from another store are refused)
 * and the key that signs positions. Kept in the database so every API replica agrees on both.
 */
export const storeMeta = pgTable("store_meta", {
  id: integer("id").primaryKey().default(1),
  epoch: text("epoch").notNull(),
  positionKey: text("position_key").notNull(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().default(sql`now()`),
});
