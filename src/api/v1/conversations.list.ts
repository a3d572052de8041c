import { createRoute, z } from "@hono/zod-openapi";
import type { Db } from "../../store/db.js";
import { recentConversations, withLastMessages } from "../../store/sync.js";
import { accountRoute } from "../auth.js";
import type { App } from "../context.js";
import { errorResponses } from "../schemas.js";
import { ConversationSchema, toConversation } from "./conversation-views.js";
import { cursorQuery, cursorTime, decodeCursor, encodeCursor, limitQuery } from "./params.js";

/** [last_message_at or null, id] of the last row of a page: the chat list's sort key. */
const ActivityCursor = z.tuple([cursorTime.nullable(), z.number().int().min(0)]);

export const ConversationList = z
  .object({
    conversations: z.array(ConversationSchema),
    next_cursor: z
      .string()
      .nullable()
      .openapi({ description: "pass as `cursor` for the next page; null at the end" }),
  })
  .openapi("ConversationList");

export const conversationListQuery = z.object({
  cursor: cursorQuery,
  limit: limitQuery(50, 200, "conversations"),
});

const route = createRoute({
  ...accountRoute,
  method: "get",
  path: "/v1/conversations",
  tags: ["conversations"],
  summary: "The chat list: every conversation, most recent activity first",
  description:
    "Ordered by the time of the last message (conversations without messages last), then newest first. A conversation whose activity changes while paging moves to the front; /v1/sync reports it.",
  request: { query: conversationListQuery },
  responses: {
    200: {
      description: "one page of conversations",
      content: {
        "application/json": {
          schema: ConversationList,
        },
      },
    },
    ...errorResponses("validation_failed", "unauthorized"),
  },
});

export function registerConversationsList(app: App): void {
  app.openapi(route, async (c) => {
    const page = await conversationPage(
      c.var.deps.store.db,
      c.var.principal.accountId,
      c.req.valid("query"),
    );
    return c.json(page, 200);
  });
}

/** One page of an account's chat list, as its phone sees it. */
export async function conversationPage(
  db: Db,
  accountId: number,
  query: { cursor?: string | undefined; limit: number },
): Promise<z.infer<typeof ConversationList>> {
  const { cursor, limit } = query;
  const after = cursor ? decodeCursor(cursor, ActivityCursor) : null;
  const rows = await recentConversations(
    db,
    accountId,
    after ? { lastMessageAt: after[0] ? new Date(after[0]) : null, id: after[1] } : null,
    limit + 1,
  );
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return {
    conversations: (await withLastMessages(db, accountId, page)).map(toConversation),
    next_cursor:
      rows.length > limit && last
        ? encodeCursor([last.lastMessageAt?.toISOString() ?? null, last.id])
        : null,
  };
}
