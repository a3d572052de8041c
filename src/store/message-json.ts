/**
 * API JSON rendered by PostgreSQL as compact text.
 *
 * A message as the API shows it: the same object,
 * key for key, as `toMessage(messageViewOf(row))` (api/v1/conversation-views.ts), which the sync
 * and conversation tests hold equal. Ingest stores it in `messages.view` with every change of
 * the row, so a sync concatenates stored text instead of building, parsing and re-serialising
 * up to 10,000 objects per request.
 */

/** SQL expressions for the columns of one message (a table alias's, or an upsert's values). */
export interface MessageColumns {
  messageId: string;
  stanzaId: string;
  direction: string;
  body: string;
  sentAt: string;
  editedAt: string;
  retractedAt: string;
  reactions: string;
  seq: string;
}

/** Exactly `Date.prototype.toISOString()` of a timestamptz, quoted as a JSON string. */
function isoJson(timestamp: string): string {
  return `'"' || to_char(${timestamp} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"'`;
}

/** A nullable text as JSON: to_json escapes it; SQL null becomes JSON null. */
function textJson(text: string): string {
  return `coalesce(to_json(${text}::text)::text, 'null')`;
}

/** The SQL rendering the message `c` as JSON text. */
export function messageJsonSql(c: MessageColumns): string {
  return `('{"id":' || to_json(${c.messageId}::text)::text
    || ',"stanza_id":' || ${textJson(c.stanzaId)}
    || ',"direction":' || to_json(${c.direction}::text)::text
    || ',"body":' || ${textJson(`case when ${c.retractedAt} is null then ${c.body} end`)}
    || ',"sent_at":' || ${isoJson(c.sentAt)}
    || ',"edited_at":' || coalesce(${isoJson(c.editedAt)}, 'null')
    || ',"retracted":' || case when ${c.retractedAt} is null then 'false' else 'true' end
    || ',"reactions":' || (${c.reactions})::text
    || ',"version":' || (${c.seq})::text || '}')`;
}

/** The columns of the messages row aliased `alias`. */
export function messageColumnsOf(alias: string): MessageColumns {
  return {
    messageId: `${alias}.message_id`,
    stanzaId: `${alias}.stanza_id`,
    direction: `${alias}.direction`,
    body: `${alias}.body`,
    sentAt: `${alias}.sent_at`,
    editedAt: `${alias}.edited_at`,
    retractedAt: `${alias}.retracted_at`,
    reactions: `${alias}.reactions`,
    seq: `${alias}.seq`,
  };
}

/** The stored rendering of the messages row `alias`, rendered on the fly where none is stored. */
export function storedMessageJsonSql(alias: string): string {
  return `coalesce(${alias}.view, ${messageJsonSql(messageColumnsOf(alias))})`;
}

/** The columns of a conversations row and the parts of a sync that complete it, as SQL. */
export interface SyncConversationColumns {
  /** the conversations row's alias */
  conversation: string;
  /** the newest message's rendering, null when there is none */
  lastMessage: string;
  /** the compacted delta, already a JSON array */
  messages: string;
  /** a boolean */
  truncated: string;
}

/**
 * A synced conversation as `SyncConversationSchema` JSON up to its calls, which the API adds
 * (a call's state depends on the time it answers): `{"peer":…,"messages_truncated":false,"calls":`.
 * Its fields are those of `conversationFields` (api/v1/conversation-views.ts), key for key, which
 * the sync tests hold equal to the conversation routes' answers.
 */
export function syncConversationJsonSql(c: SyncConversationColumns): string {
  const a = c.conversation;
  const flag = (column: string) => `case when ${column} then 'true' else 'false' end`;
  return `('{"peer":' || to_json(${a}.peer_jid::text)::text
    || ',"version":' || (${a}.version)::text
    || ',"unread_count":' || (${a}.unread_count)::text
    || ',"read_until":' || ${textJson(`${a}.read_until`)}
    || ',"peer_read_until":' || ${textJson(`${a}.peer_read_until`)}
    || ',"pinned":' || ${flag(`${a}.pinned`)}
    || ',"muted_until":' || coalesce(${isoJson(`${a}.muted_until`)}, 'null')
    || ',"archived":' || ${flag(`${a}.archived`)}
    || ',"last_message":' || coalesce(${c.lastMessage}, 'null')
    || ',"messages":' || ${c.messages}
    || ',"messages_truncated":' || ${flag(c.truncated)}
    || ',"calls":')`;
}
