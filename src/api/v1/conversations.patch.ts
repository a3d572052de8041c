import { createRoute, z } from "@hono/zod-openapi";
import { AppError } from "../../errors.js";
import { appendSettings, type SettingsChange } from "../../store/settings.js";
import { findConversation, withLastMessages } from "../../store/sync.js";
import { accountRoute } from "../auth.js";
import type { App } from "../context.js";
import { errorResponses, jsonBody } from "../schemas.js";
import { ConversationSchema, toConversation } from "./conversation-views.js";
import { normalizePeer, PeerParams } from "./params.js";

/** Years whose times every reader writes alike (toISOString and PostgreSQL's to_char). */
function inIsoYears(date: Date): boolean {
  const year = date.getUTCFullYear();
  return year >= 1 && year <= 9999;
}

const SettingsBody = z
  .strictObject({
    pinned: z.boolean().optional(),
    muted_until: z.iso
      .datetime({ offset: true })
      .refine((text) => inIsoYears(new Date(text)), "must lie in the years 0001 to 9999 (UTC)")
      .nullable()
      .optional()
      .openapi({
        description: "RFC 3339 time until which notifications stay silent; null unmutes",
      }),
    archived: z.boolean().optional(),
    read_until: z.string().min(1).max(1024).optional().openapi({
      description:
        "id of the last message the user has seen: marks it and every message sent before it read (unread_count 0 when it is the newest). An id not stored (yet) marks read all that is stored. This is syncside's own state, for the account's devices: the peer and other XMPP clients learn of the read from the app's XEP-0333 <displayed/>.",
    }),
  })
  .refine((body) => Object.keys(body).length > 0, {
    message: "give at least one of pinned, muted_until, archived, read_until",
  })
  .openapi("ConversationSettings");

const route = createRoute({
  ...accountRoute,
  middleware: [...accountRoute.middleware, jsonBody],
  method: "patch",
  path: "/v1/conversations/{peer}",
  tags: ["conversations"],
  summary:
    "Change a conversation's settings; the account's other devices see it at their next sync",
  description:
    "Each change is a `settings` event with the account's next seq: it bumps the conversation's version. A peer without a conversation yet gets one (a contact may be pinned or muted before the first message).",
  request: {
    params: PeerParams,
    body: { required: true, content: { "application/json": { schema: SettingsBody } } },
  },
  responses: {
    200: {
      description: "the conversation after the change",
      content: { "application/json": { schema: ConversationSchema } },
    },
    ...errorResponses("validation_failed", "unauthorized", "payload_too_large"),
  },
});

export function registerConversationsPatch(app: App): void {
  app.openapi(route, async (c) => {
    const { store, clock } = c.var.deps;
    const { accountId, jid } = c.var.principal;
    const peer = normalizePeer(c.req.valid("param").peer);
    if (peer === jid) {
      throw new AppError("validation_failed", "peer: a conversation needs another party");
    }
    // A name without a domain reads as a server. Settings may create a conversation with an
    // account before its first message, not with a server by a slip of the keyboard.
    if (!peer.includes("@") && !(await findConversation(store.db, accountId, peer))) {
      const domain = jid.slice(jid.indexOf("@") + 1);
      throw new AppError(
        "validation_failed",
        `peer: ${peer} names a server, with which there is no conversation; an account is user@domain (${peer}@${domain}?)`,
      );
    }
    const body = c.req.valid("json");
    const change: SettingsChange = {
      pinned: body.pinned,
      mutedUntil:
        typeof body.muted_until === "string" ? new Date(body.muted_until) : body.muted_until,
      archived: body.archived,
      readUntil: body.read_until,
    };
    const conversation = await appendSettings(store.db, {
      accountJid: jid,
      peer,
      change,
      now: clock(),
      tokenId: c.var.principal.tokenId,
    });
    if (!conversation) {
      throw new AppError("unauthorized", "the token is unknown, expired or revoked", {
        headers: { "www-authenticate": 'Bearer realm="syncside", error="invalid_token"' },
      });
    }
    c.var.logger.info(
      { accountId, version: conversation.version },
      "conversation settings changed",
    );
    const [view] = await withLastMessages(store.db, accountId, [conversation]);
    if (!view) throw new Error("withLastMessages dropped the conversation");
    return c.json(toConversation(view), 200);
  });
}
