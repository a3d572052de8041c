import type { OpenAPIHono } from "@hono/zod-openapi";
import type { Config } from "../config.js";
import type { IngestStats } from "../ingest/stats.js";
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";
import type { Store } from "../store/db.js";

export interface Readiness {
  /** Each check's state; the service is ready when every one says "ok" or "standby". */
  check(): Promise<Record<string, string>>;
}

export interface AppDeps {
  store: Store;
  config: Config;
  logger: Logger;
  readiness: Readiness;
  clock?: () => Date;
  /** this process's ingest, as /v1/admin/ingest shows it; default: a disabled one */
  ingest?: IngestStats;
  /** default: a registry of the app's own, over `ingest`, without database metrics */
  metrics?: Metrics;
  /** aborted when the process begins to stop: held long-polls answer at once */
  stopping?: AbortSignal;
}

export interface Principal {
  accountId: number;
  jid: string;
  scope: "account" | "admin";
  tokenId: string;
}

export interface AppEnv {
  Variables: {
    requestId: string;
    logger: Logger;
    deps: Required<AppDeps>;
    principal: Principal;
  };
}

export type App = OpenAPIHono<AppEnv>;
