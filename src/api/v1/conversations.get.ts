import { createRoute } from "@hono/zod-openapi";
import { withLastMessages } from "../../store/sync.js";
import { accountRoute } from "../auth.js";
import type { App } from "../context.js";
import { errorResponses } from "../schemas.js";
import { ConversationSchema, toConversation } from "./conversation-views.js";
import { ownConversation, PeerParams } from "./params.js";

const route = createRoute({
  ...accountRoute,
  method: "get",
  path: "/v1/conversations/{peer}",
  tags: ["conversations"],
  summary: "One conversation with its state and newest message",
  request: { params: PeerParams },
  responses: {
    200: {
      description: "the conversation",
      content: { "application/json": { schema: ConversationSchema } },
    },
    ...errorResponses("validation_failed", "unauthorized", "not_found"),
  },
});

export function registerConversationsGet(app: App): void {
  app.openapi(route, async (c) => {
    const { db } = c.var.deps.store;
    const { accountId } = c.var.principal;
    const conversation = await ownConversation(db, accountId, c.req.valid("param").peer);
    const [view] = await withLastMessages(db, accountId, [conversation]);
    if (!view) throw new Error("withLastMessages dropped the conversation");
    return c.json(toConversation(view), 200);
  });
}
