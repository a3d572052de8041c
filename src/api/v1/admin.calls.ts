import { createRoute, z } from "@hono/zod-openapi";
import { activeCallsOnServer } from "../../store/admin.js";
import { adminRoute } from "../auth.js";
import type { App } from "../context.js";
import { BareJid, errorResponses } from "../schemas.js";
import { CallSchema, toCall } from "./conversation-views.js";
import { cursorQuery, decodeCursor, encodeCursor, limitQuery } from "./params.js";

const AdminCall = CallSchema.extend({
  account: BareJid.openapi({ description: "whose side of the call this is" }),
}).openapi("AdminCall");

const AdminCallList = z
  .object({
    calls: z.array(AdminCall),
    next_cursor: z
      .string()
      .nullable()
      .openapi({ description: "pass as `cursor` for the next page; null at the end" }),
  })
  .openapi("AdminCallList");

/** [account id, call id] of the last row of a page. */
const CallCursor = z.tuple([z.number().int().min(0), z.string()]);

const route = createRoute({
  ...adminRoute,
  method: "get",
  path: "/v1/admin/calls",
  tags: ["admin"],
  summary: "Calls in flight on the server, over all accounts",
  description:
    "One entry per account and call: a call between two accounts of this server is listed for the caller (direction out) and for the callee (direction in). Calls past their ring timeout or maximum duration are not listed.",
  request: { query: z.object({ cursor: cursorQuery, limit: limitQuery(50, 500, "calls") }) },
  responses: {
    200: {
      description: "one page of calls",
      content: { "application/json": { schema: AdminCallList } },
    },
    ...errorResponses("validation_failed", "unauthorized", "forbidden"),
  },
});

export function registerAdminCalls(app: App): void {
  app.openapi(route, async (c) => {
    const { store, clock } = c.var.deps;
    const { cursor, limit } = c.req.valid("query");
    const after = cursor ? decodeCursor(cursor, CallCursor) : null;
    const now = clock();
    const rows = await activeCallsOnServer(store.db, {
      after: after ? { accountId: after[0], callId: after[1] } : null,
      limit: limit + 1,
      now,
    });
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return c.json(
      {
        calls: page.map((r) => ({ account: r.jid, ...toCall(r.call, now) })),
        next_cursor:
          rows.length > limit && last
            ? encodeCursor([last.call.accountId, last.call.callId])
            : null,
      },
      200,
    );
  });
}
