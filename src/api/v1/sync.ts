import { createRoute, z } from "@hono/zod-openapi";
import type { Context, TypedResponse } from "hono";
import { AppError } from "../../errors.js";
import type { CallRow } from "../../store/calls.js";
import type { Store } from "../../store/db.js";
import { loadStoreMeta, type StoreMeta } from "../../store/meta.js";
import { readSync, type SyncRequest, type SyncSnapshot } from "../../store/sync.js";
import { accountRoute } from "../auth.js";
import { changeFeedFor } from "../change-feed.js";
import type { App } from "../context.js";
import { decodePosition, encodePosition, type Position } from "../position.js";
import { errorResponses } from "../schemas.js";
import {
  CallSchema,
  SyncConversationSchema,
  syncConversationJson,
  toCall,
} from "./conversation-views.js";
import { limitQuery } from "./params.js";

const MAX_WAIT_SECONDS = 30;

/** The query of a sync without its long-poll: shared with the admin's read-only view. */
export const syncQueryFields = {
  since: z
    .string()
    .min(1)
    .max(200)
    .optional()
    .openapi({
      param: { name: "since", in: "query" },
      description:
        "`position` from the previous sync response of this account; omit for a first sync. A position of another store or account, or one no longer valid, is answered 410 `position_expired`",
    }),
  limit: limitQuery(50, 500, "conversations"),
  messages: z.coerce
    .number()
    .int()
    .min(1)
    .max(200)
    .default(20)
    .openapi({
      param: { name: "messages", in: "query" },
      description: "messages per conversation (default 20, at most 200); the newest are kept",
      example: 20,
    }),
};

const SyncQuery = z.object({
  ...syncQueryFields,
  wait: z.coerce
    .number()
    .int()
    .min(0)
    .max(MAX_WAIT_SECONDS)
    .default(0)
    .openapi({
      param: { name: "wait", in: "query" },
      // A default of 0 makes the generator widen the type to integer-or-null.
      type: "integer",
      minimum: 0,
      maximum: MAX_WAIT_SECONDS,
      default: 0,
      description: `seconds to hold the request open when nothing changed since \`since\` (default 0, at most ${MAX_WAIT_SECONDS}); answered as soon as something changes`,
      example: 25,
    }),
});

export const SyncResponse = z
  .object({
    position: z
      .string()
      .openapi({ description: "opaque; send it as `since` once this response is applied" }),
    caught_up: z.boolean().openapi({ description: "`!has_more`: nothing is left to fetch" }),
    has_more: z.boolean().openapi({
      description: "more conversations changed than `limit`; call again with `position`",
    }),
    unread_total: z.number().int().openapi({
      description: "badge count: unread messages over all conversations that are not archived",
    }),
    calls: z.array(CallSchema).openapi({
      description:
        "active calls (ringing for this account, or accepted and not finished); never paged",
    }),
    conversations: z.array(SyncConversationSchema).openapi({
      description:
        "with `since`: conversations changed since, by version ascending. Without: the `limit` most recently active conversations (list the rest with /v1/conversations)",
    }),
  })
  .openapi("Sync");

type SyncJson = z.infer<typeof SyncResponse>;

const route = createRoute({
  ...accountRoute,
  method: "get",
  path: "/v1/sync",
  tags: ["sync"],
  summary: "Everything that changed since the last sync, and every active call, in one request",
  description:
    "Paged syncs continue exactly where the previous page stopped: no change is skipped or repeated, even while new events arrive; a conversation that changed again between pages comes again with its newer state.",
  request: { query: SyncQuery },
  responses: {
    200: {
      description: "the changes",
      content: { "application/json": { schema: SyncResponse } },
    },
    ...errorResponses("validation_failed", "invalid_position", "unauthorized", "position_expired"),
  },
});

/** Calls leave the active list at expiry without any event; a long-poll compares this key. */
function callsKey(calls: CallRow[]): string {
  return calls.map((c) => `${c.callId}:${c.state}`).join(",");
}

/** Milliseconds until the first active call expires, so a long-poll answers when it does. */
function untilFirstExpiry(calls: CallRow[], now: Date): number {
  const times = calls.flatMap((c) => (c.expiresAt ? [c.expiresAt.getTime() - now.getTime()] : []));
  return Math.max(0, Math.min(Number.POSITIVE_INFINITY, ...times));
}

export function registerSync(app: App): void {
  app.openapi(route, async (c) => {
    const { store, clock, logger, metrics, stopping } = c.var.deps;
    const { accountId } = c.var.principal;
    const query = c.req.valid("query");
    const meta = await loadStoreMeta(store);
    const since = decodeSince(meta, query.since, accountId);
    const { limit, messages } = query;
    const read = () => readSnapshot(store, { accountId, since, limit, messages, now: clock() });

    // Subscribed before the first read, so a change committed between read and wait still wakes us.
    // The feed outlives this request, so it logs with the app's logger, not this request's.
    const subscription =
      since && query.wait > 0 ? await changeFeedFor(store, logger).subscribe(accountId) : null;
    const deadline = Date.now() + query.wait * 1000;
    // Only a long-poll watches for the client going away, or the process stopping: it answers
    // at once then, rather than hold the stop. Asked for on every request, the abort controller
    // behind the request's signal is made for each and outlives its answer.
    const ended = subscription ? new AbortController() : null;
    const end = () => ended?.abort();
    if (ended) {
      c.req.raw.signal.addEventListener("abort", end, { once: true });
      stopping.addEventListener("abort", end, { once: true });
      if (c.req.raw.signal.aborted || stopping.aborted) end();
    }
    const signal = ended?.signal ?? null;
    let waiting = false;
    try {
      let snapshot = await read();
      const initialCalls = callsKey(snapshot.calls);
      while (
        subscription &&
        signal &&
        snapshot.conversations.length === 0 &&
        callsKey(snapshot.calls) === initialCalls &&
        Date.now() < deadline &&
        !signal.aborted
      ) {
        if (!waiting) {
          waiting = true;
          metrics.longPolls.inc();
        }
        const ms = Math.min(deadline - Date.now(), untilFirstExpiry(snapshot.calls, clock()) + 1);
        await subscription.wait(ms, signal);
        if (signal.aborted) break;
        snapshot = await read();
      }
      c.var.logger.debug(
        { accountId, conversations: snapshot.conversations.length, hasMore: snapshot.hasMore },
        "sync answered",
      );
      return jsonText(c, syncJson(meta, snapshot, clock()));
    } finally {
      if (waiting) metrics.longPolls.dec();
      subscription?.close();
      if (ended) {
        c.req.raw.signal.removeEventListener("abort", end);
        stopping.removeEventListener("abort", end);
      }
    }
  });
}

/**
 * `since` as a position of this store for this account; null for a first sync. A position of
 * another account (or of an account erased since) is expired, not garbled: it is genuine, and
 * a phone that changed accounts recovers by starting over.
 */
export function decodeSince(
  meta: StoreMeta,
  text: string | undefined,
  accountId: number,
): Position | null {
  if (text === undefined) return null;
  const decoded = decodePosition(meta.epoch, meta.positionKey, text);
  if (!decoded.ok && decoded.reason === "garbled") {
    throw new AppError("invalid_position", "since: not a position this server issued");
  }
  if (!decoded.ok || decoded.position.account !== accountId) throw expired();
  return decoded.position;
}

export type SyncAnswer = Extract<SyncSnapshot, { ok: true }>;

/** One read of everything the account's phone gets for this request. */
export async function readSnapshot(store: Store, request: SyncRequest): Promise<SyncAnswer> {
  const snapshot = await readSync(store.db, request);
  // A seq this account never reached (the position comes from a restored or other database), or
  // one from before an admin erased the account's mirror.
  if (!snapshot.ok) throw expired();
  return snapshot;
}

/**
 * The `SyncResponse` as JSON (UTF-8). The messages are spliced in as the bytes PostgreSQL
 * rendered them in: decoding, parsing, serialising and encoding them again was most of a large
 * sync's work in this process.
 */
export function syncJson(meta: StoreMeta, snapshot: SyncAnswer, now: Date): Buffer<ArrayBuffer> {
  const head: Omit<SyncJson, "conversations"> = {
    position: encodePosition(meta.epoch, meta.positionKey, {
      account: snapshot.accountId,
      seq: snapshot.seq,
      base: snapshot.base,
    }),
    caught_up: !snapshot.hasMore,
    has_more: snapshot.hasMore,
    unread_total: snapshot.unreadTotal,
    calls: snapshot.calls.map((call) => toCall(call, now)),
  };
  const parts: Buffer[] = [Buffer.from(`${JSON.stringify(head).slice(0, -1)},"conversations":[`)];
  snapshot.conversations.forEach((c, i) => {
    if (i > 0) parts.push(COMMA);
    parts.push(...syncConversationJson(c, now));
  });
  parts.push(END);
  return Buffer.concat(parts);
}

const COMMA = Buffer.from(",");
const END = Buffer.from("]}");

/**
 * Answers 200 with a body that is already JSON, as `c.json` would answer an object. The route's
 * schema still describes it: the contract tests validate every answer against it.
 */
export function jsonText(c: Context, body: Buffer<ArrayBuffer>) {
  // The typed-response helper only takes objects; the body is a `SyncResponse` nonetheless.
  return c.body(body, 200, { "content-type": "application/json" }) as unknown as TypedResponse<
    SyncJson,
    200,
    "json"
  >;
}

function expired(): AppError {
  return new AppError(
    "position_expired",
    "since: this position is from another store or account, or no longer valid; sync again without since",
  );
}
