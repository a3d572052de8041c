import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { IngestStats } from "./ingest/stats.js";
import type { DatabaseUse } from "./store/db.js";

/** Every metric syncside exports; one registry per process (tests make their own). */
export interface Metrics {
  registry: Registry;
  httpDuration: Histogram<"method" | "route" | "status">;
  longPolls: Gauge;
  pushOutcomes: Counter<"platform" | "kind" | "outcome">;
  pushWatched: Gauge;
}

export function createMetrics(options: {
  ingest: IngestStats;
  /** how syncside uses PostgreSQL, asked at scrape time; left out on PGlite */
  database?: () => Promise<DatabaseUse | null>;
}): Metrics {
  const registry = new Registry();
  const { ingest } = options;

  const httpDuration = new Histogram({
    name: "syncside_http_request_duration_seconds",
    help: "HTTP request duration by route template and status",
    labelNames: ["method", "route", "status"] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const longPolls = new Gauge({
    name: "syncside_sync_long_polls_open",
    help: "GET /v1/sync requests currently waiting for a change",
    registers: [registry],
  });
  const pushOutcomes = new Counter({
    name: "syncside_push_notifications_total",
    help: "Push notifications by platform, kind (voip, alert) and outcome",
    labelNames: ["platform", "kind", "outcome"] as const,
    registers: [registry],
  });

  const pushWatched = new Gauge({
    name: "syncside_push_devices_watched",
    help: "Push devices this process watches because ingest has not yet stored what their newest publish was for",
    registers: [registry],
  });

  new Gauge({
    name: "syncside_ingest_leader",
    help: "1 while this process is the ingest leader",
    registers: [registry],
    collect() {
      this.set(ingest.role === "leader" ? 1 : 0);
    },
  });
  new Gauge({
    name: "syncside_ingest_connected",
    help: "1 while the observer session is online",
    registers: [registry],
    collect() {
      this.set(ingest.connected ? 1 : 0);
    },
  });
  new Gauge({
    name: "syncside_ingest_lag_seconds",
    help: "How far the store is behind the server: the last batch's lag from the server's receipt to commit, or the age of the oldest copy still waiting for its commit if more (0 on a standby)",
    registers: [registry],
    collect() {
      this.set((ingest.lagMs() ?? 0) / 1000);
    },
  });
  new Counter({
    name: "syncside_ingest_events_total",
    help: "Events committed by kind",
    labelNames: ["kind"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [kind, n] of ingest.eventsByKind) this.inc({ kind }, n);
    },
  });
  new Counter({
    name: "syncside_ingest_rejected_total",
    help: "Copies rejected as bad input, by reason",
    labelNames: ["reason"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [reason, n] of ingest.rejects) this.inc({ reason }, n);
    },
  });
  new Counter({
    name: "syncside_ingest_write_failures_total",
    help: "Batch writes that failed and were retried",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(ingest.writeFailures);
    },
  });
  const database = options.database;
  if (database) {
    // One pg_stat_activity read serves the three gauges of a scrape: prom-client starts their
    // collect() one after the other in the same turn, so they share what the first one asked.
    let asked: Promise<DatabaseUse | null> | null = null;
    const use = () => {
      if (!asked) {
        asked = database().catch(() => null);
        setImmediate(() => {
          asked = null;
        });
      }
      return asked;
    };
    new Gauge({
      name: "syncside_database_connections",
      help: "Connections of every syncside process to this PostgreSQL database",
      registers: [registry],
      async collect() {
        const now = await use();
        if (now) this.set(now.syncside);
      },
    });
    new Gauge({
      name: "syncside_database_pool_connections",
      help: "This process's pool: connections busy (a statement or transaction) or idle",
      labelNames: ["state"] as const,
      registers: [registry],
      async collect() {
        const now = await use();
        if (!now) return;
        this.set({ state: "busy" }, now.busy);
        this.set({ state: "idle" }, now.idle);
      },
    });
    new Gauge({
      name: "syncside_database_pool_max",
      help: "This process's pool: the most connections it opens",
      registers: [registry],
      async collect() {
        const now = await use();
        if (now) this.set(now.max);
      },
    });
  }
  return { registry, httpDuration, longPolls, pushOutcomes, pushWatched };
}
