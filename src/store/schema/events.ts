import { sql } from "drizzle-orm";
import {
  bigint,
  index,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  unique,
} from "drizzle-orm/pg-core";

export const EVENT_KINDS = [
  "message",
  "edit",
  "retract",
  "reaction",
  "displayed",
  "received",
  "call",
  "settings",
] as const;
export type EventKindName = (typeof EVENT_KINDS)[number];

/** Append-only log: every change an account can see, numbered by its per-account seq. */
export const events = pgTable(
  "events",
  {
    accountId: bigint("account_id", { mode: "number" }).notNull(),
    seq: bigint("seq", { mode: "number" }).notNull(),
    conversationId: bigint("conversation_id", { mode: "number" }).notNull(),
    kind: text("kind", { enum: EVENT_KINDS }).notNull(),
    direction: text("direction", { enum: ["in", "out"] }).notNull(),
    messageId: text("message_id"),
    originId: text("origin_id"),
    stanzaId: text("stanza_id"),
    targetId: text("target_id"),
    body: text("body"),
    payload: jsonb("payload").$type<Record<string, unknown>>().notNull().default({}),
    sentAt: timestamp("sent_at", { withTimezone: true }).notNull(),
    ingestedAt: timestamp("ingested_at", { withTimezone: true }).notNull().default(sql`now()`),
    dedupeKey: text("dedupe_key").notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.accountId, t.seq] }),
    unique("events_account_dedupe").on(t.accountId, t.dedupeKey),
    index("events_account_conversation_seq").on(t.accountId, t.conversationId, t.seq),
    // Only the kinds looked up by target: edits, retractions and reactions that arrived before
    // their message, and a call's signals. Markers and messages, most events, stay out of it.
    index("events_account_target")
      .on(t.accountId, t.targetId)
      .where(sql`${t.kind} in ('edit', 'retract', 'reaction', 'call')`),
  ],
);
