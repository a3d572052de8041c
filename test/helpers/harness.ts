import { expect, onTestFinished } from "vitest";
import { createApp } from "../../src/api/app.js";
import { ensureAccount, issueToken, type Scope } from "../../src/api/auth.js";
import type { App, AppDeps } from "../../src/api/context.js";
import { type Config, loadConfig } from "../../src/config.js";
import { IngestStats } from "../../src/ingest/stats.js";
import { createLogger } from "../../src/logger.js";
import { createMetrics } from "../../src/metrics.js";
import { expectContract } from "./contract.js";
import { openTestStore, type TestStore } from "./database.js";

export interface Harness {
  app: App;
  store: TestStore["store"];
  config: Config;
  /** what /v1/admin/ingest reports: no ingest runs in the harness, so "disabled" unless changed */
  ingest: IngestStats;
  /**
   * a bearer token for this JID, created straight in the store (no XMPP login); an admin one adds
   * the JID to ADMIN_JIDS
   */
  token(jid: string, scope?: Scope): Promise<string>;
  /** app.request with a bearer token */
  get(path: string, token: string, init?: RequestInit): Promise<Response>;
  /** GET with a bearer token, answered 200 as openapi.yaml says: the body */
  read<T>(path: string, token: string): Promise<T>;
  close(): Promise<void>;
}

/**
 * An app on its own fresh database (one per test file, see STYLE.md), with real middleware and
 * routes. `env` adds configuration as the environment would (e.g. ejabberd's address).
 */
export async function createHarness(
  options: {
    env?: Record<string, string>;
    driver?: "postgres" | "pglite";
    deps?: Partial<AppDeps>;
  } = {},
): Promise<Harness> {
  const t = await openTestStore(options.driver ?? "postgres");
  const config = loadConfig({ LOG_LEVEL: "silent", ...options.env });
  const ingest = options.deps?.ingest ?? new IngestStats();
  if (!options.deps?.ingest) ingest.role = "disabled";
  const app = createApp({
    store: t.store,
    config,
    logger: createLogger(process.env.TEST_LOG_LEVEL ?? "silent"),
    readiness: { check: async () => ({ database: "ok" }) },
    metrics: createMetrics({
      ingest,
      database: t.store.driver === "postgres" ? () => t.store.databaseUse() : undefined,
    }),
    ...options.deps,
    ingest,
  });
  const get = (path: string, token: string, init: RequestInit = {}) =>
    Promise.resolve(
      app.request(path, {
        ...init,
        headers: { authorization: `Bearer ${token}`, ...(init.headers ?? {}) },
      }),
    );
  return {
    app,
    store: t.store,
    config,
    ingest,
    async token(jid, scope = "account") {
      // An admin token works only for a JID the configuration names.
      if (scope === "admin" && !config.adminJids.includes(jid)) config.adminJids.push(jid);
      const accountId = await ensureAccount(t.store.db, jid);
      const issued = await issueToken(t.store.db, {
        accountId,
        scope,
        label: "test",
        ttlMs: config.tokenTtlMs,
        now: new Date(),
      });
      return issued.token;
    },
    get,
    async read<T>(path: string, token: string) {
      const res = await get(path, token);
      expect(res.status, `${path}: ${await res.clone().text()}`).toBe(200);
      return expectContract<T>(res, "GET", path);
    },
    close: () => t.close(),
  };
}

/** Same as createHarness, closed automatically when the current test finishes. */
export async function harnessForTest(options?: Parameters<typeof createHarness>[0]) {
  const h = await createHarness(options);
  onTestFinished(() => h.close());
  return h;
}

/**
 * The Node adapter's bindings for a request from `address`, as `app.request`'s third argument:
 * in-process requests have no socket, and the login rate limit counts per client address.
 */
export function fromAddress(address: string) {
  return {
    incoming: { socket: { remoteAddress: address, remotePort: 40_000, remoteFamily: "IPv4" } },
  };
}
