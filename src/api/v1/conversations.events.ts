import { createRoute, z } from "@hono/zod-openapi";
import { EVENT_KINDS } from "../../store/schema/events.js";
import { type EventRow, eventsAfter } from "../../store/sync.js";
import { accountRoute } from "../auth.js";
import type { App } from "../context.js";
import { errorResponses, Timestamp } from "../schemas.js";
import { limitQuery, ownConversation, PeerParams, seqQuery } from "./params.js";

const EventSchema = z
  .object({
    seq: z.number().int(),
    kind: z.enum(EVENT_KINDS),
    direction: z.enum(["in", "out"]),
    id: z.string().nullable().openapi({ description: "the stanza id, when it had one" }),
    target_id: z.string().nullable().openapi({
      description: "the message an edit, retraction, reaction or marker refers to; the call id",
    }),
    body: z.string().nullable(),
    payload: z.record(z.string(), z.unknown()).openapi({
      description:
        "kind-specific detail (reactions, marker, call signal, settings changes) and `raw`: the stanza as the server routed it",
    }),
    sent_at: Timestamp,
  })
  .openapi("Event");

const route = createRoute({
  ...accountRoute,
  method: "get",
  path: "/v1/conversations/{peer}/events",
  tags: ["conversations"],
  summary: "The raw event log of one conversation: every edit, marker and call signal",
  request: {
    params: PeerParams,
    query: z.object({
      after: seqQuery("after", "list events with a seq after this one (default 0: from the start)"),
      limit: limitQuery(100, 500, "events"),
    }),
  },
  responses: {
    200: {
      description: "one page of events, by seq ascending",
      content: {
        "application/json": {
          schema: z
            .object({
              events: z.array(EventSchema),
              next_after: z.number().int().nullable().openapi({
                description:
                  "pass as `after` for the next page; null when no more events exist now",
              }),
            })
            .openapi("EventPage"),
        },
      },
    },
    ...errorResponses("validation_failed", "unauthorized", "not_found"),
  },
});

function toEvent(row: EventRow): z.infer<typeof EventSchema> {
  // copy_id is ingest's dedupe bookkeeping, not part of what happened.
  const { copy_id: _copyId, ...payload } = row.payload;
  return {
    seq: row.seq,
    kind: row.kind,
    direction: row.direction,
    id: row.messageId,
    target_id: row.targetId,
    body: row.body,
    payload,
    sent_at: row.sentAt.toISOString(),
  };
}

export function registerConversationsEvents(app: App): void {
  app.openapi(route, async (c) => {
    const { db } = c.var.deps.store;
    const { accountId } = c.var.principal;
    const { after, limit } = c.req.valid("query");
    const conversation = await ownConversation(db, accountId, c.req.valid("param").peer);
    const rows = await eventsAfter(db, conversation, after ?? 0, limit + 1);
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return c.json(
      {
        events: page.map(toEvent),
        next_after: rows.length > limit && last ? last.seq : null,
      },
      200,
    );
  });
}
