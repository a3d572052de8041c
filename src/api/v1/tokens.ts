import type { IncomingMessage } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { getConnInfo } from "@hono/node-server/conninfo";
import { createRoute, z } from "@hono/zod-openapi";
import { and, desc, eq, gt, isNull } from "drizzle-orm";
import type { Context } from "hono";
import proxyaddr from "proxy-addr";
import { type Config, trustOf } from "../../config.js";
import { AppError } from "../../errors.js";
import { tokens } from "../../store/schema/tokens.js";
import { prepBareJid } from "../../xmpp/jid-prep.js";
import { verifyPassword } from "../../xmpp/verify-password.js";
import { accountRoute, ensureAccount, issueToken, scopeNow } from "../auth.js";
import type { App, AppEnv } from "../context.js";
import { addressBucket, SlidingWindow } from "../rate-limit.js";
import { BareJid, errorResponses, iso, jsonBody, Timestamp } from "../schemas.js";

const FAILURE_WINDOW_MS = 15 * 60_000;
const MAX_FAILURES_PER_JID = 5;
const MAX_FAILURES_PER_CLIENT = 20;

/**
 * ejabberd 23.01 refuses an unknown user at once (~3 ms) but a wrong password only after the
 * SCRAM exchange (~450 ms), so every refusal is answered no sooner than this after it began.
 */
const FAILURE_FLOOR_MS = 1_000;

/** No "@", "/", spaces or characters nodeprep forbids in the local part; one "@". */
const BARE_JID = /^[^\s"&'/:<>@]+@[^\s/@]+$/;

const Scope = z.enum(["account", "admin"]);

const TokenRequest = z
  .object({
    jid: z
      .string()
      .trim()
      .max(2047)
      .regex(BARE_JID, "expected a bare JID like alice@example.org")
      // Spelt as ejabberd compares JIDs, so "al\u00ADice" and "ＡＬＩＣＥ" are alice everywhere:
      // her login limit, the account her token reads, the name checked with ejabberd.
      .transform(prepBareJid)
      // Checked again: preparing drops characters, and may leave no local part.
      .pipe(z.string().regex(BARE_JID, "expected a bare JID like alice@example.org"))
      .openapi({ example: "alice@example.org", description: "an account of this server" }),
    password: z
      .string()
      .min(1, "must not be empty")
      // SCRAM hashes the password once per iteration: a megabyte of it is CPU, not a password.
      .max(1024)
      .openapi({ example: "correct horse" }),
    label: z
      .string()
      .max(100)
      .default("")
      .openapi({ example: "Alice's phone", description: "shown in the token list" }),
  })
  .openapi("TokenRequest");

const IssuedToken = z
  .object({
    id: z.string().openapi({ example: "tok_3q2P0xYk8mZc" }),
    token: z.string().openapi({
      description: "the bearer secret; shown only in this response, store it now",
      example: "sst_q9Xh…",
    }),
    jid: BareJid,
    scope: Scope,
    expires_at: Timestamp,
  })
  .openapi("IssuedToken");

const TokenInfo = z
  .object({
    id: z.string().openapi({ example: "tok_3q2P0xYk8mZc" }),
    label: z.string(),
    scope: Scope,
    created_at: Timestamp,
    last_used_at: Timestamp.nullable(),
    expires_at: Timestamp.openapi({ description: "moves forward while the token is used" }),
    current: z.boolean().openapi({ description: "the token that made this request" }),
  })
  .openapi("TokenInfo");

const TokenList = z.object({ tokens: z.array(TokenInfo) }).openapi("TokenList");

const TokenId = z.object({
  id: z
    .string()
    .max(100)
    .openapi({ param: { name: "id", in: "path" }, example: "tok_3q2P0xYk8mZc" }),
});

const failures = errorResponses(
  "validation_failed",
  "payload_too_large",
  "invalid_credentials",
  "too_many_attempts",
  "service_unavailable",
);

const createToken = createRoute({
  method: "post",
  path: "/v1/tokens",
  tags: ["tokens"],
  summary: "Log in with the account's XMPP password and get a bearer token",
  description:
    "The password is checked by a real login to the XMPP server. Refusals look the same whether " +
    "or not the account exists. More than 5 failures per JID or 20 per client address within " +
    "15 minutes are refused with 429 before the XMPP server is asked.",
  middleware: [jsonBody],
  request: {
    body: { required: true, content: { "application/json": { schema: TokenRequest } } },
  },
  responses: {
    201: {
      description: "the token; its secret is never shown again",
      content: { "application/json": { schema: IssuedToken } },
    },
    ...failures,
    429: {
      ...failures[429],
      headers: {
        "Retry-After": {
          description: "seconds until another attempt will be considered",
          schema: { type: "integer", minimum: 1 },
        },
      },
    },
  },
});

const listTokens = createRoute({
  ...accountRoute,
  method: "get",
  path: "/v1/tokens",
  tags: ["tokens"],
  summary: "The caller's live tokens (never their secrets)",
  responses: {
    200: { description: "newest first", content: { "application/json": { schema: TokenList } } },
    ...errorResponses("unauthorized"),
  },
});

const revokeToken = createRoute({
  ...accountRoute,
  method: "delete",
  path: "/v1/tokens/{id}",
  tags: ["tokens"],
  summary: "Revoke one of the caller's tokens; it stops working with the next request",
  request: { params: TokenId },
  responses: {
    204: { description: "revoked" },
    ...errorResponses("validation_failed", "unauthorized", "not_found"),
  },
});

/**
 * The client's address, bucketed (see addressBucket): the socket's peer, or behind trusted
 * proxies (TRUST_PROXY) the address the nearest untrusted hop was seen from, as Express reads
 * X-Forwarded-For. Behind a load balancer every socket peer is the balancer itself. "unknown"
 * where there is no socket (app.request() without an address).
 */
function clientAddress(c: Context<AppEnv>, trust: ReturnType<typeof trustOf>) {
  try {
    const socketAddress = getConnInfo(c).remote.address;
    if (!socketAddress) return "unknown";
    if (!trust) return addressBucket(socketAddress);
    const forwardedFor = c.req.header("x-forwarded-for");
    const request = {
      socket: { remoteAddress: socketAddress },
      headers: forwardedFor ? { "x-forwarded-for": forwardedFor } : {},
    };
    return addressBucket(proxyaddr(request as unknown as IncomingMessage, trust));
  } catch {
    return "unknown";
  }
}

export function registerTokens(app: App): void {
  // Per app instance: each replica (and each test app) counts its own failures.
  const byJid = new SlidingWindow(MAX_FAILURES_PER_JID, FAILURE_WINDOW_MS);
  const byClient = new SlidingWindow(MAX_FAILURES_PER_CLIENT, FAILURE_WINDOW_MS);

  /** compiled once per configuration */
  const trusts = new WeakMap<Config, ReturnType<typeof trustOf>>();

  app.openapi(createToken, async (c) => {
    const { store, config, clock } = c.var.deps;
    const logger = c.var.logger;
    const { jid, password, label } = c.req.valid("json");
    if (!trusts.has(config)) trusts.set(config, trustOf(config.trustProxy));
    const client = clientAddress(c, trusts.get(config) ?? null);
    const at = clock().getTime();

    const waitMs = Math.max(byJid.retryAfterMs(jid, at), byClient.retryAfterMs(client, at));
    if (waitMs > 0) {
      logger.warn({ jid, client }, "login refused: too many failures");
      throw new AppError("too_many_attempts", "too many failed logins; try again later", {
        headers: { "retry-after": String(Math.max(1, Math.ceil(waitMs / 1000))) },
      });
    }
    // Counted before ejabberd answers, so parallel guesses cannot overshoot the limit.
    byJid.add(jid, at);
    byClient.add(client, at);
    const forgive = () => {
      byJid.remove(jid, at);
      byClient.remove(client, at);
    };

    const started = performance.now();
    const [username = "", domain] = jid.split("@");
    let valid = false;
    try {
      valid =
        domain === config.xmpp.domain &&
        (await verifyPassword(
          { service: config.xmpp.service, domain, username, password },
          logger,
        ));
    } catch (err) {
      forgive();
      throw err;
    }
    if (!valid) {
      await sleep(Math.max(0, FAILURE_FLOOR_MS - (performance.now() - started)));
      logger.info({ jid, client }, "login refused: invalid credentials");
      throw new AppError("invalid_credentials", "the JID or password is wrong");
    }
    forgive();

    const accountId = await ensureAccount(store.db, jid);
    const scope = config.adminJids.includes(jid) ? "admin" : "account";
    const issued = await issueToken(store.db, {
      accountId,
      scope,
      label,
      ttlMs: config.tokenTtlMs,
      now: clock(),
    });
    logger.info({ jid, tokenId: issued.id, scope }, "token issued");
    return c.json(
      {
        id: issued.id,
        token: issued.token,
        jid,
        scope,
        expires_at: issued.expiresAt.toISOString(),
      },
      201,
    );
  });

  app.openapi(listTokens, async (c) => {
    const { store, clock, config } = c.var.deps;
    const principal = c.var.principal;
    const rows = await store.db
      .select({
        id: tokens.id,
        label: tokens.label,
        scope: tokens.scope,
        createdAt: tokens.createdAt,
        lastUsedAt: tokens.lastUsedAt,
        expiresAt: tokens.expiresAt,
      })
      .from(tokens)
      .where(
        and(
          eq(tokens.accountId, principal.accountId),
          isNull(tokens.revokedAt),
          gt(tokens.expiresAt, clock()),
        ),
      )
      .orderBy(desc(tokens.createdAt), desc(tokens.id));
    return c.json(
      {
        tokens: rows.map((r) => ({
          id: r.id,
          label: r.label,
          scope: scopeNow(r.scope, principal.jid, config),
          created_at: r.createdAt.toISOString(),
          last_used_at: iso(r.lastUsedAt),
          expires_at: r.expiresAt.toISOString(),
          current: r.id === principal.tokenId,
        })),
      },
      200,
    );
  });

  app.openapi(revokeToken, async (c) => {
    const { store, clock } = c.var.deps;
    const { id } = c.req.valid("param");
    const now = clock();
    // The account is part of the match: another account's token is as absent as an unknown one.
    const revoked = await store.db
      .update(tokens)
      .set({ revokedAt: now })
      .where(
        and(
          eq(tokens.id, id),
          eq(tokens.accountId, c.var.principal.accountId),
          isNull(tokens.revokedAt),
          gt(tokens.expiresAt, now),
        ),
      )
      .returning({ id: tokens.id });
    if (revoked.length === 0) throw new AppError("not_found", `no token ${id}`);
    c.var.logger.info({ tokenId: id }, "token revoked");
    return c.body(null, 204);
  });
}
