import { sql } from "drizzle-orm";
import { bigint, index, jsonb, pgTable, text, timestamp, unique } from "drizzle-orm/pg-core";

export const CALL_STATES = [
  "proposed",
  "ringing",
  "accepted",
  "finished",
  "rejected",
  "retracted",
  "missed",
] as const;
export type CallState = (typeof CALL_STATES)[number];

/** One XEP-0353 session as one account sees it (the caller and the callee each have a row). */
export const calls = pgTable(
  "calls",
  {
    accountId: bigint("account_id", { mode: "number" }).notNull(),
    callId: text("call_id").notNull(),
    conversationId: bigint("conversation_id", { mode: "number" }).notNull(),
    peerJid: text("peer_jid").notNull(),
    direction: text("direction", { enum: ["in", "out"] }).notNull(),
    media: jsonb("media").$type<string[]>().notNull().default([]),
    state: text("state", { enum: CALL_STATES }).notNull(),
    proposedAt: timestamp("proposed_at", { withTimezone: true }),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull(),
    answeredAt: timestamp("answered_at", { withTimezone: true }),
    answeredBy: text("answered_by"),
    endedAt: timestamp("ended_at", { withTimezone: true }),
    endReason: text("end_reason"),
    expiresAt: timestamp("expires_at", { withTimezone: true }),
    migratedTo: text("migrated_to"),
    seq: bigint("seq", { mode: "number" }).notNull(),
  },
  (t) => [
    unique("calls_account_call").on(t.accountId, t.callId),
    index("calls_account_state").on(t.accountId, t.state),
    // Ingest looks up the sessions that migrated to a batch's calls (XEP-0353): few ever do.
    index("calls_account_migrated_to")
      .on(t.accountId, t.migratedTo)
      .where(sql`${t.migratedTo} is not null`),
  ],
);
