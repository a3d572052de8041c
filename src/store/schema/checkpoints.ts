import { sql } from "drizzle-orm";
import { pgTable, text, timestamp } from "drizzle-orm/pg-core";

/** How far ingest has durably read a source; advanced in the same transaction as the events. */
export const checkpoints = pgTable("checkpoints", {
  source: text("source").primaryKey(),
  position: text("position").notNull(),
  updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().default(sql`now()`),
});
