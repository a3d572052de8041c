import { createRoute } from "@hono/zod-openapi";
import { adminRoute } from "../auth.js";
import type { App } from "../context.js";
import { errorResponses } from "../schemas.js";
import { AccountParams, knownAccount } from "./admin-params.js";
import { ConversationList, conversationListQuery, conversationPage } from "./conversations.list.js";

const route = createRoute({
  ...adminRoute,
  method: "get",
  path: "/v1/admin/accounts/{jid}/conversations",
  tags: ["admin"],
  summary: "An account's chat list, exactly as GET /v1/conversations answers its phone",
  description: "Read-only: nothing is marked or touched, for support.",
  request: { params: AccountParams, query: conversationListQuery },
  responses: {
    200: {
      description: "one page of the account's conversations",
      content: { "application/json": { schema: ConversationList } },
    },
    ...errorResponses("validation_failed", "unauthorized", "forbidden", "not_found"),
  },
});

export function registerAdminAccountsConversations(app: App): void {
  app.openapi(route, async (c) => {
    const { db } = c.var.deps.store;
    const accountId = await knownAccount(db, c.req.valid("param").jid);
    return c.json(await conversationPage(db, accountId, c.req.valid("query")), 200);
  });
}
