import { z } from "@hono/zod-openapi";
import { AppError } from "../../errors.js";
import type { Db } from "../../store/db.js";
import { type ConversationRow, findConversation } from "../../store/sync.js";
import { prepBareJid } from "../../xmpp/jid-prep.js";
import { unstorableText } from "../schemas.js";

/** The years 1–9999 in epoch milliseconds: the times RFC 3339 and PostgreSQL both take. */
export const FIRST_TIME = Date.parse("0001-01-01T00:00:00Z");
export const LAST_TIME = Date.parse("9999-12-31T23:59:59.999Z");

/** A time a cursor carries as RFC 3339 UTC, within the years PostgreSQL takes. */
export const cursorTime = z.iso.datetime().refine((text) => {
  const ms = Date.parse(text);
  return ms >= FIRST_TIME && ms <= LAST_TIME;
});

/** A page size with its documented default and maximum; 0, negatives and non-numbers are 400s. */
export function limitQuery(fallback: number, max: number, what: string) {
  return z.coerce
    .number()
    .int()
    .min(1)
    .max(max)
    .default(fallback)
    .openapi({
      param: { name: "limit", in: "query" },
      description: `${what} per page (default ${fallback}, at most ${max})`,
      example: fallback,
    });
}

/** A non-negative seq or version number in a query string. */
export function seqQuery(name: string, description: string) {
  return z.coerce
    .number()
    .int()
    .min(0)
    .max(Number.MAX_SAFE_INTEGER)
    .optional()
    .openapi({ param: { name, in: "query" }, description });
}

export const cursorQuery = z
  .string()
  .min(1)
  .max(512)
  .optional()
  .openapi({
    param: { name: "cursor", in: "query" },
    description: "`next_cursor` from the previous page, as given",
  });

/** local@domain, or a bare domain (a component, the server itself): peers can be either. */
const BARE_JID = /^(?:[^@/\s"&'<>:]+@)?[^@/\s"&'<>:]+$/;
/** local@domain: an account always has a local part. */
export const ACCOUNT_JID = /^[^@/\s"&'<>:]+@[^@/\s"&'<>:]+$/;

/** RFC 7622: each part of a JID is at most 1,023 bytes (also what a store index can hold). */
const MAX_JID_PART_BYTES = 1023;

export const PeerParams = z.object({
  peer: z
    .string()
    .max(3071)
    .regex(BARE_JID, "expected a bare JID like bob@example.org")
    .refine(withinPartLimit, `each part of the JID must be at most ${MAX_JID_PART_BYTES} bytes`)
    .openapi({
      param: { name: "peer", in: "path" },
      description:
        "the peer's bare JID (or bare domain, for a component or the server), URL-encoded",
      example: "bob@example.org",
    }),
});

/** Cursors are opaque to clients; inside they are base64url JSON of a sort key. */
export function encodeCursor(key: unknown): string {
  return Buffer.from(JSON.stringify(key), "utf8").toString("base64url");
}

export function decodeCursor<T>(text: string, schema: z.ZodType<T>): T {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(text, "base64url").toString("utf8"));
  } catch {
    parsed = undefined;
  }
  const result = schema.safeParse(parsed);
  if (!result.success || unstorableText(result.data) !== null) {
    throw new AppError("validation_failed", "cursor: not a cursor this API issued");
  }
  return result.data;
}

/**
 * A peer as ingest stores it: spelt as ejabberd compares JIDs (see prepBareJid), and checked
 * again, since preparing drops characters ("\u00AD@example.org" has no local part left).
 */
export function normalizePeer(peer: string): string {
  const prepared = prepBareJid(peer);
  if (!BARE_JID.test(prepared) || !withinPartLimit(prepared)) {
    throw new AppError("validation_failed", `peer: ${peer} is not a JID once prepared`);
  }
  return prepared;
}

function withinPartLimit(jid: string): boolean {
  return jid.split("@").every((part) => Buffer.byteLength(part) <= MAX_JID_PART_BYTES);
}

/**
 * The account's own conversation with this peer. Another account's conversation with the same
 * peer is never looked at, so a 404 says nothing about anyone else.
 */
export async function ownConversation(
  db: Db,
  accountId: number,
  peer: string,
): Promise<ConversationRow> {
  const conversation = await findConversation(db, accountId, normalizePeer(peer));
  if (!conversation) throw new AppError("not_found", `no conversation with ${peer}`);
  return conversation;
}
