import { createRoute, z } from "@hono/zod-openapi";
import { AppError } from "../../errors.js";
import { CALL_ACTIONS } from "../../ingest/parse.js";
import { callHistory, effectiveCall, findCall } from "../../store/calls.js";
import { accountRoute } from "../auth.js";
import type { App } from "../context.js";
import { errorResponses, Timestamp } from "../schemas.js";
import { CallSchema, toCall } from "./conversation-views.js";

const CallSignalSchema = z
  .object({
    version: z.number().int().openapi({ description: "seq of the call event in the conversation" }),
    action: z.enum(CALL_ACTIONS),
    direction: z
      .enum(["in", "out"])
      .openapi({ description: "`out` = sent by this account's device" }),
    resource: z.string().nullable().openapi({ description: "the sending device's resource" }),
    reason: z.string().nullable(),
    migrated_to: z.string().nullable(),
    at: Timestamp.openapi({ description: "when the server received the signal" }),
  })
  .openapi("CallSignal");

const CallDetail = CallSchema.extend({
  duration_seconds: z.number().nullable().openapi({
    description: "from answer to end, once an answered call has ended",
  }),
  history: z.array(CallSignalSchema),
}).openapi("CallDetail");

const params = z.object({
  id: z
    .string()
    .min(1)
    .max(256)
    .openapi({ param: { name: "id", in: "path" }, description: "the XEP-0353 session id" }),
});

const route = createRoute({
  ...accountRoute,
  method: "get",
  path: "/v1/calls/{id}",
  tags: ["calls"],
  summary: "One call of the account, with every signal as it happened",
  request: { params },
  responses: {
    200: { description: "the call", content: { "application/json": { schema: CallDetail } } },
    ...errorResponses("validation_failed", "unauthorized", "not_found"),
  },
});

export function registerCallsGet(app: App): void {
  app.openapi(route, async (c) => {
    const { db } = c.var.deps.store;
    const { accountId } = c.var.principal;
    const row = await findCall(db, accountId, c.req.valid("param").id);
    if (!row) throw new AppError("not_found", "no such call");
    const now = c.var.deps.clock();
    const call = effectiveCall(row, now);
    const history = await callHistory(db, accountId, row);
    const duration =
      call.answeredAt && call.endedAt
        ? Math.max(0, Math.round((call.endedAt.getTime() - call.answeredAt.getTime()) / 1000))
        : null;
    return c.json(
      {
        ...toCall(row, now),
        duration_seconds: duration,
        history: history.map((h) => ({
          version: h.seq,
          action: h.signal.action,
          direction: h.direction,
          resource: h.fromResource,
          reason: h.signal.reason,
          migrated_to: h.signal.migratedTo,
          at: h.at.toISOString(),
        })),
      },
      200,
    );
  });
}
