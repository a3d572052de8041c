import { randomBytes } from "node:crypto";
import { loadConfig } from "../../src/config.js";
import { type IngestOptions, runIngest } from "../../src/ingest/leader.js";
import { Pipeline, type PipelineOptions } from "../../src/ingest/pipeline.js";
import { IngestStats } from "../../src/ingest/stats.js";
import { createLogger } from "../../src/logger.js";
import type { Store } from "../../src/store/db.js";
import { checkpoints } from "../../src/store/schema/checkpoints.js";
import type { EjabberdInstance } from "./ejabberd.js";
import { waitFor } from "./wait.js";

export interface RunningIngest {
  stats: IngestStats;
  stop(): Promise<void>;
}

/** The environment that points syncside at the test ejabberd. */
export function ingestEnv(i: EjabberdInstance): Record<string, string> {
  return {
    XMPP_SERVICE: i.service,
    XMPP_DOMAIN: i.domain,
    OBSERVER_JID: i.observerJid,
    OBSERVER_PASSWORD: i.observerPassword,
    // Test files ingest side by side, each into its own database: one session each.
    OBSERVER_RESOURCE: `test-${randomBytes(4).toString("hex")}`,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent",
  };
}

/** Runs the real ingest (leader lock, observer session, pipeline) until stop(), once caught up. */
export async function startIngest(
  store: Store,
  i: EjabberdInstance,
  env: Record<string, string> = {},
  options: Pick<IngestOptions, "maxPendingLive"> = {},
): Promise<RunningIngest> {
  const config = loadConfig({ ...ingestEnv(i), ...env });
  // The shared test observer's archive holds every earlier test's copies; a fresh database
  // starts reading a minute back (archive ids are µs timestamps) instead of from the beginning.
  await store.db
    .insert(checkpoints)
    .values({
      source: `observer:${config.xmpp.observerJid}`,
      position: String((Date.now() - 60_000) * 1000),
    })
    .onConflictDoNothing();
  const stats = new IngestStats();
  const controller = new AbortController();
  const done = runIngest({
    store,
    config,
    logger: createLogger(config.logLevel),
    stats,
    signal: controller.signal,
    standbyPollMs: 200,
    ...options,
  });
  await waitFor(() => stats.connected && !stats.catchingUp, {
    timeoutMs: 30_000,
    what: "ingest caught up",
  });
  return {
    stats,
    async stop() {
      controller.abort();
      await done;
    },
  };
}

/**
 * A Pipeline on `store` for tests that feed it copies themselves: copies from the server
 * example.org between its accounts, a checkpoint source of its own unless given.
 */
export function pipelineFor(store: Store, o: Partial<PipelineOptions> = {}): Pipeline {
  return new Pipeline({
    store,
    logger: createLogger("silent"),
    stats: new IngestStats(),
    write: { isLocal: (jid) => jid.endsWith("@example.org"), callRingTimeoutMs: 60_000 },
    trustedOrigins: new Set(["example.org"]),
    checkpointSource: `observer:test-${randomBytes(4).toString("hex")}`,
    ...o,
  });
}
