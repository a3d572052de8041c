import { createRoute, z } from "@hono/zod-openapi";
import { listAccounts } from "../../store/admin.js";
import { adminRoute } from "../auth.js";
import type { App } from "../context.js";
import { BareJid, errorResponses, iso, Timestamp } from "../schemas.js";
import { cursorQuery, decodeCursor, encodeCursor, limitQuery } from "./params.js";

const AdminAccount = z
  .object({
    jid: BareJid,
    conversations: z.number().int().openapi({ description: "conversations in its mirror" }),
    last_activity_at: Timestamp.nullable().openapi({
      description: "server time of its latest event; null when it has none",
    }),
    last_seq: z.number().int().openapi({ description: "its stream position: events so far" }),
    created_at: Timestamp.openapi({ description: "when syncside first saw it" }),
  })
  .openapi("AdminAccount");

const AdminAccountList = z
  .object({
    accounts: z.array(AdminAccount),
    next_cursor: z
      .string()
      .nullable()
      .openapi({ description: "pass as `cursor` for the next page; null at the end" }),
  })
  .openapi("AdminAccountList");

/** [jid] of the last row of a page. */
const JidCursor = z.tuple([z.string()]);

const route = createRoute({
  ...adminRoute,
  method: "get",
  path: "/v1/admin/accounts",
  tags: ["admin"],
  summary: "Accounts syncside mirrors, by JID, with their conversation count and last activity",
  request: {
    query: z.object({
      cursor: cursorQuery,
      limit: limitQuery(50, 500, "accounts"),
      q: z
        .string()
        .trim()
        .min(1)
        .max(200)
        .optional()
        .openapi({
          param: { name: "q", in: "query" },
          description: "only JIDs containing this text (case-insensitive)",
          example: "alice",
        }),
    }),
  },
  responses: {
    200: {
      description: "one page of accounts",
      content: { "application/json": { schema: AdminAccountList } },
    },
    ...errorResponses("validation_failed", "unauthorized", "forbidden"),
  },
});

export function registerAdminAccountsList(app: App): void {
  app.openapi(route, async (c) => {
    const { cursor, limit, q } = c.req.valid("query");
    const after = cursor ? decodeCursor(cursor, JidCursor)[0] : null;
    const rows = await listAccounts(c.var.deps.store.db, { afterJid: after, q, limit: limit + 1 });
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return c.json(
      {
        accounts: page.map((a) => ({
          jid: a.jid,
          conversations: a.conversations,
          last_activity_at: iso(a.lastActivityAt),
          last_seq: a.lastSeq,
          created_at: a.createdAt.toISOString(),
        })),
        next_cursor: rows.length > limit && last ? encodeCursor([last.jid]) : null,
      },
      200,
    );
  });
}
