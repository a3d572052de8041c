import { serve } from "@hono/node-server";
import { createApp } from "./api/app.js";
import { ConfigError, loadConfig } from "./config.js";
import { runIngest } from "./ingest/leader.js";
import { IngestStats } from "./ingest/stats.js";
import { createLogger } from "./logger.js";
import { createMetrics } from "./metrics.js";
import type { PushSenders } from "./push/dispatcher.js";
import { createPushSenders, runPush } from "./push/leader.js";
import { retryForever } from "./retry.js";
import { DataDirInUse, openDb } from "./store/db.js";

async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  let senders: PushSenders | undefined;
  try {
    config = loadConfig(process.env);
    // Read now, for the instance that may run the app server: a credential that cannot be used
    // stops start-up, rather than the app server alone later, unseen by readiness.
    if (config.push.componentSecret) senders = await createPushSenders(config.push);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`syncside: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  const store = await openDb({ url: config.databaseUrl, dataDir: config.dataDir }).catch(
    (err: unknown) => {
      if (!(err instanceof DataDirInUse)) throw err;
      process.stderr.write(`syncside: ${err.message}\n`);
      process.exit(1);
    },
  );
  logger.info({ driver: store.driver }, "database configured");

  let migrated = false;
  const shutdown = new AbortController();
  const ingestStats = new IngestStats();
  if (!config.ingestEnabled) ingestStats.role = "disabled";
  const metrics = createMetrics({
    ingest: ingestStats,
    database: store.driver === "postgres" ? () => store.databaseUse() : undefined,
  });

  const app = createApp({
    store,
    config,
    logger,
    ingest: ingestStats,
    metrics,
    stopping: shutdown.signal,
    readiness: {
      async check() {
        const database = migrated
          ? await store.ping().then(
              () => "ok",
              () => "unreachable",
            )
          : "starting";
        return { database, ingest: ingestStats.readiness() };
      },
    },
  });

  const server = serve({ fetch: app.fetch, hostname: config.host, port: config.port }, (info) =>
    logger.info({ host: config.host, port: info.port }, "listening"),
  );

  const migration = retryForever(
    async () => {
      await store.migrate();
      migrated = true;
      logger.info("database migrated");
    },
    {
      signal: shutdown.signal,
      onError: (err, delayMs) =>
        logger.warn({ err, retryInMs: delayMs }, "database not ready, retrying"),
    },
  );

  const ingest = migration.then(() =>
    config.ingestEnabled
      ? runIngest({ store, config, logger, stats: ingestStats, signal: shutdown.signal })
      : undefined,
  );

  // XEP-0357 app server for ejabberd's mod_push, when this instance has the component secret.
  const push = migration.then(() =>
    runPush({
      store,
      config,
      logger,
      signal: shutdown.signal,
      senders,
      onOutcome: (platform, kind, outcome) => metrics.pushOutcomes.inc({ platform, kind, outcome }),
      onWatched: (devices) => metrics.pushWatched.set(devices),
    }).catch((err) => logger.error({ err }, "push app server stopped")),
  );

  let stopping = false;
  const stop = async (signal: string) => {
    // Ctrl-C under a supervisor (npm run local) brings its SIGTERM as well: one stop.
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    shutdown.abort();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await ingest.catch(() => {});
    await push;
    await store.close();
    logger.info("stopped");
    process.exit(0);
  };
  // SIGHUP too: a terminal closing under it must not cut it off with the database open.
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
    process.once(signal, () => void stop(signal));
  }
}

main().catch((err) => {
  process.stderr.write(`syncside: fatal: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
