import { createRoute, z } from "@hono/zod-openapi";
import { loadStoreMeta } from "../../store/meta.js";
import { adminRoute } from "../auth.js";
import type { App } from "../context.js";
import { errorResponses } from "../schemas.js";
import { AccountParams, knownAccount } from "./admin-params.js";
import {
  decodeSince,
  jsonText,
  readSnapshot,
  SyncResponse,
  syncJson,
  syncQueryFields,
} from "./sync.js";

const route = createRoute({
  ...adminRoute,
  method: "get",
  path: "/v1/admin/accounts/{jid}/sync",
  tags: ["admin"],
  summary: "What GET /v1/sync answers the account's phone, read-only and without long-polling",
  description:
    "The same query and answer as /v1/sync, for support: positions are interchangeable with the account's own.",
  request: { params: AccountParams, query: z.object(syncQueryFields) },
  responses: {
    200: {
      description: "the changes",
      content: { "application/json": { schema: SyncResponse } },
    },
    ...errorResponses(
      "validation_failed",
      "invalid_position",
      "unauthorized",
      "forbidden",
      "not_found",
      "position_expired",
    ),
  },
});

export function registerAdminAccountsSync(app: App): void {
  app.openapi(route, async (c) => {
    const { store, clock } = c.var.deps;
    const accountId = await knownAccount(store.db, c.req.valid("param").jid);
    const query = c.req.valid("query");
    const meta = await loadStoreMeta(store);
    const since = decodeSince(meta, query.since, accountId);
    const snapshot = await readSnapshot(store, { ...query, accountId, since, now: clock() });
    return jsonText(c, syncJson(meta, snapshot, clock()));
  });
}
