import { createRoute, z } from "@hono/zod-openapi";
import { activeCalls } from "../../store/calls.js";
import { accountRoute } from "../auth.js";
import type { App } from "../context.js";
import { errorResponses } from "../schemas.js";
import { CallSchema, toCall } from "./conversation-views.js";

const ActiveCalls = z
  .object({
    calls: z.array(CallSchema).openapi({
      description:
        "incoming calls still ringing (an offer older than the ring timeout is missed, not listed) and accepted calls not yet finished",
    }),
  })
  .openapi("ActiveCalls");

const route = createRoute({
  ...accountRoute,
  method: "get",
  path: "/v1/calls",
  tags: ["calls"],
  summary: "The account's active calls: ringing for it now, or answered and not yet finished",
  responses: {
    200: { description: "active calls", content: { "application/json": { schema: ActiveCalls } } },
    ...errorResponses("unauthorized"),
  },
});

export function registerCallsList(app: App): void {
  app.openapi(route, async (c) => {
    const now = c.var.deps.clock();
    const rows = await activeCalls(c.var.deps.store.db, c.var.principal.accountId, now);
    return c.json({ calls: rows.map((row) => toCall(row, now)) }, 200);
  });
}
