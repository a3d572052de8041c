import { z } from "@hono/zod-openapi";
import type { CallRow } from "../../store/calls.js";
import { effectiveCall, isTerminal } from "../../store/calls.js";
import { CALL_STATES } from "../../store/schema/calls.js";
import type {
  ConversationRow,
  ConversationView,
  MessageView,
  SyncedConversation,
} from "../../store/sync.js";
import { BareJid, iso, Timestamp } from "../schemas.js";

/** The JSON shapes of messages, conversations and calls, shared by /v1/sync and /v1/conversations. */

export const MessageSchema = z
  .object({
    id: z.string().openapi({ description: "the message's stanza id (or origin-id)" }),
    stanza_id: z.string().nullable().openapi({
      description:
        "on outgoing messages, the id of the message in the account's own archive (XEP-0359 stanza-id, for MAM queries); null on incoming messages, whose copy carries no archive id of the recipient",
    }),
    direction: z.enum(["in", "out"]),
    body: z.string().nullable().openapi({ description: "current text; null once retracted" }),
    sent_at: Timestamp,
    edited_at: Timestamp.nullable(),
    retracted: z.boolean(),
    reactions: z.record(z.string(), z.array(z.string())).openapi({
      description: "reacter bare JID → emojis",
      example: { "alice@example.org": ["👍"] },
    }),
    version: z.number().int().openapi({ description: "seq of the message's last change" }),
  })
  .openapi("Message", {
    description: "A message in its current state: apply as an upsert by `id` and `direction`.",
  });

export const ConversationSchema = z
  .object({
    peer: BareJid,
    version: z.number().int().openapi({ description: "seq of the conversation's latest event" }),
    unread_count: z.number().int().openapi({
      description:
        "incoming messages, not retracted, sent after this account's latest own message or displayed marker, or after the message a `read_until` request named",
    }),
    read_until: z
      .string()
      .nullable()
      .openapi({ description: "id of the last message this account displayed" }),
    peer_read_until: z
      .string()
      .nullable()
      .openapi({ description: "id of the last message the peer displayed" }),
    pinned: z.boolean(),
    muted_until: Timestamp.nullable(),
    archived: z.boolean(),
    last_message: MessageSchema.nullable(),
  })
  .openapi("Conversation");

export const CallSchema = z
  .object({
    id: z.string().openapi({ description: "the XEP-0353 session id" }),
    peer: BareJid,
    direction: z.enum(["in", "out"]),
    media: z.array(z.string()).openapi({ example: ["audio"] }),
    state: z.enum(CALL_STATES),
    proposed_at: Timestamp.nullable(),
    expires_at: Timestamp.nullable().openapi({
      description:
        "while it rings, when it will be missed; once answered, when it is taken as over (the longest a call may last); null once it has ended",
    }),
    answered_by: z.string().nullable().openapi({ description: "resource of the answering device" }),
    answered_at: Timestamp.nullable(),
    ended_at: Timestamp.nullable(),
    end_reason: z.string().nullable(),
  })
  .openapi("Call");

export const SyncConversationSchema = ConversationSchema.extend({
  messages: z.array(MessageSchema).openapi({
    description:
      "The compacted delta: every message created or changed since `since`, once, in its current state, ordered by when it was sent (on a first sync: the newest messages).",
  }),
  messages_truncated: z.boolean().openapi({
    description:
      "More messages changed than `messages` allowed; these are the newest. Page the rest with /v1/conversations/{peer}/messages.",
  }),
  calls: z.array(CallSchema).openapi({
    description:
      "Calls of this conversation that changed since `since`, in their current state, oldest offer first (on a first sync: the latest begun, as many as `messages`, and only those begun since the oldest message shown was sent when `messages_truncated`), so the chat can show a missed call or a call's length. Upsert by `id`.",
  }),
}).openapi("SyncConversation");

export type MessageJson = z.infer<typeof MessageSchema>;
export type ConversationJson = z.infer<typeof ConversationSchema>;
export type CallJson = z.infer<typeof CallSchema>;

export function toMessage(view: MessageView): MessageJson {
  return {
    id: view.id,
    stanza_id: view.stanzaId,
    direction: view.direction,
    body: view.body,
    sent_at: view.sentAt,
    edited_at: view.editedAt,
    retracted: view.retracted,
    reactions: view.reactions,
    version: view.version,
  };
}

export function toConversation(view: ConversationView): ConversationJson {
  return {
    ...conversationFields(view.conversation),
    last_message: view.lastMessage ? toMessage(view.lastMessage) : null,
  };
}

/** A sync renders the same fields in SQL: syncConversationJsonSql (store/message-json.ts). */
function conversationFields(c: ConversationRow): Omit<ConversationJson, "last_message"> {
  return {
    peer: c.peerJid,
    version: c.version,
    unread_count: c.unreadCount,
    read_until: c.readUntil,
    peer_read_until: c.peerReadUntil,
    pinned: c.pinned,
    muted_until: iso(c.mutedUntil),
    archived: c.archived,
  };
}

/**
 * A synced conversation as `SyncConversationSchema` JSON, in UTF-8 pieces: all but its calls
 * come as PostgreSQL rendered them and are spliced in unparsed.
 */
export function syncConversationJson(synced: SyncedConversation, now: Date): Buffer[] {
  if (synced.calls.length === 0) return [synced.json, NO_CALLS];
  const calls = JSON.stringify(synced.calls.map((call) => toCall(call, now)));
  return [synced.json, Buffer.from(`${calls}}`)];
}

const NO_CALLS = Buffer.from("[]}");

/** A call as a phone must see it now: past its ring timeout an unanswered call is missed. */
export function toCall(row: CallRow, now: Date): CallJson {
  const call = effectiveCall(row, now);
  return {
    id: call.callId,
    peer: call.peerJid,
    direction: call.direction,
    media: call.media,
    state: call.state,
    proposed_at: iso(call.proposedAt),
    // An ended call expires no more; what its row holds depends on the order signals came in.
    expires_at: isTerminal(call.state) ? null : iso(call.expiresAt),
    answered_by: call.answeredBy,
    answered_at: iso(call.answeredAt),
    ended_at: iso(call.endedAt),
    end_reason: call.endReason,
  };
}
