import { sql } from "drizzle-orm";
import { bigint, index, jsonb, pgTable, text, timestamp, unique } from "drizzle-orm/pg-core";

/** reacter bare JID → that reacter's current emoji set */
export type Reactions = Record<string, string[]>;

/** Current state of each message, so a client that missed five edits gets only the last text. */
export const messages = pgTable(
  "messages",
  {
    accountId: bigint("account_id", { mode: "number" }).notNull(),
    conversationId: bigint("conversation_id", { mode: "number" }).notNull(),
    direction: text("direction", { enum: ["in", "out"] }).notNull(),
    messageId: text("message_id").notNull(),
    originId: text("origin_id"),
    stanzaId: text("stanza_id"),
    body: text("body"),
    sentAt: timestamp("sent_at", { withTimezone: true }).notNull(),
    editedAt: timestamp("edited_at", { withTimezone: true }),
    retractedAt: timestamp("retracted_at", { withTimezone: true }),
    reactions: jsonb("reactions").$type<Reactions>().notNull().default({}),
    /**
     * reacter bare JID → server time (ISO 8601) of the reaction that set that reacter's current
     * set, kept when the set is emptied: a reaction older than it, written later (catch-up and
     * live copies interleave after a reconnect), changes nothing.
     */
    reactedAt: jsonb("reacted_at").$type<Record<string, string>>().notNull().default({}),
    createdSeq: bigint("created_seq", { mode: "number" }).notNull(),
    seq: bigint("seq", { mode: "number" }).notNull(),
    /**
     * The message as the API shows it (JSON text), written with every change of the row, so a
     * sync hands on up to 10,000 messages without rendering them again. Null on rows written
     * before it existed; readers render those on the fly (see `messageJsonSql`).
     */
    view: text("view"),
  },
  (t) => [
    // A client picks its own ids, so the two sides of a chat may reuse one; direction separates them.
    unique("messages_key").on(t.accountId, t.conversationId, t.direction, t.messageId),
    index("messages_account_conversation_seq").on(t.accountId, t.conversationId, t.seq),
    // Messages are shown in the order they were sent, which ingest may write them out of: ties
    // (same millisecond) go by the order they were written.
    index("messages_account_conversation_sent").on(
      t.accountId,
      t.conversationId,
      t.sentAt,
      t.createdSeq,
    ),
    // Only an origin-id that differs from the stanza id needs its own entry (most clients send
    // the same id twice); ingest finds the rest by messages_key.
    index("messages_account_conversation_origin")
      .on(t.accountId, t.conversationId, t.originId)
      .where(sql`${t.originId} <> ${t.messageId}`),
  ],
);
