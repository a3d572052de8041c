import { randomUUID } from "node:crypto";
import { and, eq, gt, isNull } from "drizzle-orm";
import type { Db } from "./db.js";
import {
  loadConversations,
  lockAccounts,
  markReadUntil,
  notifyAccounts,
  type ReadState,
  recountUnread,
  saveAccountSeqs,
  saveConversations,
} from "./events.js";
import { events } from "./schema/events.js";
import { tokens } from "./schema/tokens.js";
import { type ConversationRow, findMessage } from "./sync.js";

/** What a user may change about a conversation; absent fields stay as they are. */
export interface SettingsChange {
  pinned?: boolean;
  mutedUntil?: Date | null;
  archived?: boolean;
  /** id of the last message the user has seen: marks everything up to it read */
  readUntil?: string;
}

/**
 * Writes a settings change as a `settings` event with the account's next seq, under the same
 * account row lock ingest takes, so the seq stays gap-free and the new version reaches the
 * account's other devices through sync and NOTIFY. Creates the conversation when it has none yet:
 * a user may pin or mute a contact before the first message.
 */
export async function appendSettings(
  db: Db,
  input: {
    accountJid: string;
    peer: string;
    change: SettingsChange;
    now: Date;
    /**
     * The token the request came with, checked again under the row lock: a request that waited
     * there on an erase of the account (its removal from ejabberd, the admin route) must not
     * write into the mirror a new owner of the JID starts. Null then, and nothing written.
     */
    tokenId?: string;
  },
): Promise<ConversationRow | null> {
  return db.transaction(async (tx) => {
    const locked = await lockAccounts(tx, [input.accountJid]);
    const account = locked.get(input.accountJid);
    if (!account) throw new Error(`account ${input.accountJid} was not locked`);
    if (input.tokenId !== undefined) {
      const [live] = await tx
        .select({ id: tokens.id })
        .from(tokens)
        .where(
          and(
            eq(tokens.id, input.tokenId),
            eq(tokens.accountId, account.id),
            isNull(tokens.revokedAt),
            gt(tokens.expiresAt, input.now),
          ),
        );
      if (!live) return null;
    }
    const convs = await loadConversations(tx, [{ accountId: account.id, peer: input.peer }]);
    const conv = convs.get(`${account.id} ${input.peer}`);
    if (!conv) throw new Error(`conversation ${account.id} ${input.peer} was not loaded`);

    const { change } = input;
    if (change.pinned !== undefined) conv.pinned = change.pinned;
    if (change.mutedUntil !== undefined) conv.mutedUntil = change.mutedUntil;
    if (change.archived !== undefined) conv.archived = change.archived;
    if (change.readUntil !== undefined) {
      // Same rule as a displayed marker from one of the account's own devices, set now: a
      // marker sent earlier that ingest writes later does not move it back.
      conv.readUntil = change.readUntil;
      conv.readUntilAt = input.now;
    }

    const read: ReadState = { ...conv, recount: false };
    if (change.readUntil !== undefined) {
      // Read up to when that message was sent: one sent later, even one on its way to the
      // store now, stays unread. A message not stored yet was read with all that is stored.
      const seen = await findMessage(tx, conv, change.readUntil);
      const upTo = seen?.sentAt ?? conv.lastMessageAt;
      if (upTo) markReadUntil(read, upTo);
      conv.unreadCount = read.unreadCount;
      conv.readAt = read.readAt;
    }

    const seq = ++account.lastSeq;
    await tx.insert(events).values({
      accountId: account.id,
      seq,
      conversationId: conv.id,
      kind: "settings",
      direction: "out",
      payload: { changes: payloadOf(change) },
      sentAt: input.now,
      // Each request is its own change; nothing replays it, so a random key is enough.
      dedupeKey: `settings:${randomUUID()}`,
    });
    conv.version = seq;
    conv.lastEventSeq = seq;
    conv.updatedAt = input.now;
    await saveConversations(tx, [conv]);
    for (const counted of await recountUnread(tx, read.recount ? [conv] : [])) {
      conv.unreadCount = counted.unreadCount;
    }
    await saveAccountSeqs(tx, [account]);
    await notifyAccounts(tx, [account.id]);
    return conv;
  });
}

/** The change as the API spelled it, for the event log. */
function payloadOf(change: SettingsChange): Record<string, unknown> {
  const payload: Record<string, unknown> = {};
  if (change.pinned !== undefined) payload.pinned = change.pinned;
  if (change.mutedUntil !== undefined)
    payload.muted_until = change.mutedUntil?.toISOString() ?? null;
  if (change.archived !== undefined) payload.archived = change.archived;
  if (change.readUntil !== undefined) payload.read_until = change.readUntil;
  return payload;
}
