import { sql } from "drizzle-orm";
import { bigint, index, pgTable, text, timestamp } from "drizzle-orm/pg-core";

/** Bearer tokens; only the SHA-256 of the secret is kept. */
export const tokens = pgTable(
  "tokens",
  {
    id: text("id").primaryKey(),
    accountId: bigint("account_id", { mode: "number" }).notNull(),
    scope: text("scope", { enum: ["account", "admin"] }).notNull(),
    hash: text("hash").notNull().unique(),
    label: text("label").notNull().default(""),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().default(sql`now()`),
    lastUsedAt: timestamp("last_used_at", { withTimezone: true }),
    expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
    revokedAt: timestamp("revoked_at", { withTimezone: true }),
  },
  (t) => [index("tokens_account").on(t.accountId)],
);
