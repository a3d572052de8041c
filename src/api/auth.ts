import { createHash, randomBytes } from "node:crypto";
import { and, eq, gt, isNull, sql } from "drizzle-orm";
import type { MiddlewareHandler } from "hono";
import type { Config } from "../config.js";
import { AppError } from "../errors.js";
import type { Db } from "../store/db.js";
import { accounts } from "../store/schema/accounts.js";
import { tokens } from "../store/schema/tokens.js";
import type { AppEnv, Principal } from "./context.js";

export type Scope = "account" | "admin";

/** Only this digest is stored: a database leak does not leak usable tokens. */
export function hashToken(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

export interface IssuedToken {
  id: string;
  token: string;
  expiresAt: Date;
}

/** Creates a token with 256 random bits; the secret is returned here and never again. */
export async function issueToken(
  db: Db,
  input: { accountId: number; scope: Scope; label: string; ttlMs: number; now: Date },
): Promise<IssuedToken> {
  const id = `tok_${randomBytes(9).toString("base64url")}`;
  const token = `sst_${randomBytes(32).toString("base64url")}`;
  const expiresAt = new Date(input.now.getTime() + input.ttlMs);
  await db.insert(tokens).values({
    id,
    accountId: input.accountId,
    scope: input.scope,
    hash: hashToken(token),
    label: input.label,
    createdAt: input.now,
    expiresAt,
  });
  return { id, token, expiresAt };
}

/** Returns the account's id, creating its row when it has never had an event yet. */
export async function ensureAccount(db: Db, jid: string): Promise<number> {
  await db.insert(accounts).values({ jid }).onConflictDoNothing();
  const [row] = await db.select({ id: accounts.id }).from(accounts).where(eq(accounts.jid, jid));
  if (!row) throw new Error(`account ${jid} could not be created`);
  return row.id;
}

/** Sliding expiry is refreshed at most this often per token, not on every request. */
const TOUCH_INTERVAL_MS = 60_000;

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/** The lookup every authenticated request makes: built once per database, then only executed. */
function tokenLookupOf(db: Db): TokenLookup {
  let lookup = tokenLookups.get(db);
  if (!lookup) {
    lookup = buildTokenLookup(db);
    tokenLookups.set(db, lookup);
  }
  return lookup;
}

type TokenLookup = ReturnType<typeof buildTokenLookup>;
const tokenLookups = new WeakMap<Db, TokenLookup>();

function buildTokenLookup(db: Db) {
  return db
    .select({
      tokenId: tokens.id,
      accountId: tokens.accountId,
      scope: tokens.scope,
      lastUsedAt: tokens.lastUsedAt,
      jid: accounts.jid,
    })
    .from(tokens)
    .innerJoin(accounts, eq(accounts.id, tokens.accountId))
    .where(
      and(
        eq(tokens.hash, sql.placeholder("hash")),
        isNull(tokens.revokedAt),
        gt(tokens.expiresAt, sql.placeholder("now")),
      ),
    )
    .prepare("token_lookup");
}

/** Resolves the bearer token to its principal; any failure is one indistinct 401. */
export const authenticate: MiddlewareHandler<AppEnv> = async (c, next) => {
  const { store, config, clock } = c.var.deps;
  const match = BEARER.exec(c.req.header("authorization") ?? "");
  if (!match?.[1]) {
    throw new AppError("unauthorized", "a bearer token is required", {
      headers: { "www-authenticate": 'Bearer realm="syncside"' },
    });
  }
  const now = clock();
  const [row] = await tokenLookupOf(store.db).execute({
    hash: hashToken(match[1]),
    // A placeholder skips the column's encoder, and the drivers take timestamps as text.
    now: now.toISOString(),
  });
  if (!row) {
    throw new AppError("unauthorized", "the token is unknown, expired or revoked", {
      headers: { "www-authenticate": 'Bearer realm="syncside", error="invalid_token"' },
    });
  }
  if (!row.lastUsedAt || now.getTime() - row.lastUsedAt.getTime() > TOUCH_INTERVAL_MS) {
    await store.db
      .update(tokens)
      .set({ lastUsedAt: now, expiresAt: new Date(now.getTime() + config.tokenTtlMs) })
      .where(eq(tokens.id, row.tokenId));
  }
  const principal: Principal = {
    accountId: row.accountId,
    jid: row.jid,
    scope: scopeNow(row.scope, row.jid, config),
    tokenId: row.tokenId,
  };
  c.set("principal", principal);
  await next();
};

/**
 * A token's scope as of now: admin only while its account is still in ADMIN_JIDS, so taking a
 * JID out of the list (and restarting) takes the rights from tokens issued before, which
 * sliding expiry would otherwise keep alive for as long as they are used.
 */
export function scopeNow(issued: Scope, jid: string, config: Pick<Config, "adminJids">): Scope {
  return issued === "admin" && config.adminJids.includes(jid) ? "admin" : "account";
}

/** Admin routes: a valid account token is not enough. */
export const requireAdmin: MiddlewareHandler<AppEnv> = async (c, next) => {
  if (c.var.principal?.scope !== "admin") {
    throw new AppError("forbidden", "this route needs an admin token");
  }
  await next();
};

const BEARER_SECURITY = () => [{ bearer: [] as string[] }];

/**
 * How a route requires a token: spread into its createRoute definition. Authentication runs per
 * route (before the route's validators) instead of on `/v1/*`, because POST /v1/tokens is where
 * a token comes from; the same object declares the bearer scheme, so spec and code cannot drift.
 * Add `errorResponses("unauthorized", …)` to the route's responses.
 */
export const accountRoute = {
  middleware: [authenticate],
  // A fresh array per route, so openapi.yaml spells it out instead of using YAML aliases.
  get security() {
    return BEARER_SECURITY();
  },
};

/** As accountRoute, and the token must have admin scope (add "forbidden" to its responses). */
export const adminRoute = {
  middleware: [authenticate, requireAdmin],
  get security() {
    return BEARER_SECURITY();
  },
};
