import { createRoute } from "@hono/zod-openapi";
import { AppError } from "../../errors.js";
import { eraseAccount } from "../../store/admin.js";
import { adminRoute } from "../auth.js";
import type { App } from "../context.js";
import { errorResponses } from "../schemas.js";
import { AccountParams } from "./admin-params.js";
import { normalizePeer } from "./params.js";

const route = createRoute({
  ...adminRoute,
  method: "delete",
  path: "/v1/admin/accounts/{jid}",
  tags: ["admin"],
  summary: "Erase an account's mirror",
  description: [
    "Deletes, in one transaction, the account's events, conversations, messages, calls, tokens",
    "(its sessions end at once) and push devices. The XMPP account and its ejabberd archive are",
    "untouched, and messages arriving later are mirrored again. What other accounts hold stays:",
    "a peer's own conversation with this JID is the peer's data and is not erased. The account",
    "itself stays listed (no conversations) with its stream position; positions issued before",
    "the erase are answered 410 `position_expired`, so the account's phones start over, and",
    "messages sent before it are not mirrored again should ingest read them once more (clocks of",
    "ejabberd and PostgreSQL are compared: keep them in sync). Erasing again is harmless.",
  ].join(" "),
  request: { params: AccountParams },
  responses: {
    204: { description: "erased" },
    ...errorResponses("validation_failed", "unauthorized", "forbidden", "not_found"),
  },
});

export function registerAdminAccountsDelete(app: App): void {
  app.openapi(route, async (c) => {
    const { jid } = c.req.valid("param");
    const erased = await eraseAccount(c.var.deps.store.db, normalizePeer(jid));
    if (!erased) throw new AppError("not_found", `no account ${jid}`);
    c.var.logger.info(
      { accountId: erased.accountId, by: c.var.principal.tokenId },
      "account mirror erased",
    );
    return c.body(null, 204);
  });
}
