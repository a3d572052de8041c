import { sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  index,
  integer,
  pgTable,
  primaryKey,
  text,
  timestamp,
  unique,
} from "drizzle-orm/pg-core";

/** One account's view of its chat with one peer; `version` is the seq of its latest event. */
export const conversations = pgTable(
  "conversations",
  {
    accountId: bigint("account_id", { mode: "number" }).notNull(),
    id: bigint("id", { mode: "number" }).notNull().generatedAlwaysAsIdentity(),
    peerJid: text("peer_jid").notNull(),
    version: bigint("version", { mode: "number" }).notNull(),
    lastEventSeq: bigint("last_event_seq", { mode: "number" }).notNull(),
    lastMessageAt: timestamp("last_message_at", { withTimezone: true }),
    unreadCount: integer("unread_count").notNull().default(0),
    /**
     * The account has read everything sent up to this time: the newest of its own messages,
     * its displayed markers and the messages read_until requests named. unread_count = its
     * incoming messages sent later and not retracted, whatever order ingest wrote them in.
     */
    readAt: timestamp("read_at", { withTimezone: true }),
    readUntil: text("read_until"),
    /** server time of the marker (or the request) that set read_until: older ones change nothing */
    readUntilAt: timestamp("read_until_at", { withTimezone: true }),
    peerReadUntil: text("peer_read_until"),
    /** server time of the peer's marker that set peer_read_until */
    peerReadUntilAt: timestamp("peer_read_until_at", { withTimezone: true }),
    pinned: boolean("pinned").notNull().default(false),
    mutedUntil: timestamp("muted_until", { withTimezone: true }),
    archived: boolean("archived").notNull().default(false),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().default(sql`now()`),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().default(sql`now()`),
  },
  (t) => [
    primaryKey({ columns: [t.accountId, t.id] }),
    unique("conversations_account_peer").on(t.accountId, t.peerJid),
    index("conversations_account_version").on(t.accountId, t.version),
    index("conversations_account_activity").on(t.accountId, t.lastMessageAt, t.id),
  ],
);
