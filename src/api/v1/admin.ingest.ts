import { createRoute, z } from "@hono/zod-openapi";
import { checkpointSource } from "../../ingest/leader.js";
import { readCheckpoint } from "../../store/admin.js";
import { adminRoute } from "../auth.js";
import type { App } from "../context.js";
import { errorResponses, iso, Timestamp } from "../schemas.js";

const Counts = z.record(z.string(), z.number().int());

const IngestStatus = z
  .object({
    role: z.enum(["leader", "standby", "starting", "disabled"]).openapi({
      description:
        "this process: `leader` ingests; `standby` waits for the leader's lock; `disabled` when INGEST=off",
    }),
    observer_connected: z.boolean().openapi({ description: "the observer session is online" }),
    catching_up: z
      .boolean()
      .openapi({ description: "reading the observer's archive after a (re)connect" }),
    checkpoint: z.object({ position: z.string(), updated_at: Timestamp }).nullable().openapi({
      description:
        "how far ingest has durably read, from the database: a standby shows the leader's; null before the first batch",
    }),
    last_batch_at: Timestamp.nullable(),
    lag_ms: z.number().int().nullable().openapi({
      description:
        "how far the store is behind the server: from the server receiving the newest copy of the last batch to its commit, or, while copies wait for their commit (writes failing, a catch-up), the age of the oldest of them if more; null on a standby",
    }),
    events_per_second: z
      .number()
      .openapi({ description: "events committed, over the last minute" }),
    events_written: z.number().int(),
    duplicates: z.number().int().openapi({ description: "replayed copies skipped by dedupe" }),
    write_failures: z
      .number()
      .int()
      .openapi({ description: "batch writes that failed and were retried" }),
    events_by_kind: Counts.openapi({ example: { message: 120, displayed: 40 } }),
    rejected: Counts.openapi({
      description: "copies skipped as bad input, by reason",
      example: { malformed: 1 },
    }),
    ignored: Counts.openapi({ description: "copies that are not conversation events, by reason" }),
  })
  .openapi("IngestStatus", {
    description: "Counters are this process's since it started; a standby's stay at zero.",
  });

const route = createRoute({
  ...adminRoute,
  method: "get",
  path: "/v1/admin/ingest",
  tags: ["admin"],
  summary: "This process's ingest: leader or standby, connection, checkpoint, lag, rates, rejects",
  responses: {
    200: {
      description: "ingest status",
      content: { "application/json": { schema: IngestStatus } },
    },
    ...errorResponses("unauthorized", "forbidden"),
  },
});

export function registerAdminIngest(app: App): void {
  app.openapi(route, async (c) => {
    const { store, config, ingest } = c.var.deps;
    const checkpoint = await readCheckpoint(store.db, checkpointSource(config));
    const lagMs = ingest.lagMs();
    return c.json(
      {
        role: ingest.role,
        observer_connected: ingest.connected,
        catching_up: ingest.catchingUp,
        checkpoint: checkpoint
          ? { position: checkpoint.position, updated_at: checkpoint.updatedAt.toISOString() }
          : null,
        last_batch_at: iso(ingest.lastBatchAt),
        lag_ms: lagMs === null ? null : Math.round(lagMs),
        events_per_second: ingest.eventsPerSecond(),
        events_written: ingest.eventsWritten,
        duplicates: ingest.duplicates,
        write_failures: ingest.writeFailures,
        events_by_kind: Object.fromEntries(ingest.eventsByKind),
        rejected: Object.fromEntries(ingest.rejects),
        ignored: Object.fromEntries(ingest.ignored),
      },
      200,
    );
  });
}
