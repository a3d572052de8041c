import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "./context.js";

const Health = z.object({ status: z.literal("ok") }).openapi("Health");
const Readiness = z
  .object({
    status: z.enum(["ready", "not_ready"]),
    checks: z.record(z.string(), z.string()).openapi({
      example: { database: "ok", ingest: "connected" },
    }),
  })
  .openapi("Readiness");

const healthz = createRoute({
  method: "get",
  path: "/healthz",
  tags: ["operations"],
  summary: "Liveness: the process answers",
  responses: { 200: { description: "alive", content: { "application/json": { schema: Health } } } },
});

const readyz = createRoute({
  method: "get",
  path: "/readyz",
  tags: ["operations"],
  summary: "Readiness: the database is reachable and ingest is connected or standing by",
  responses: {
    200: { description: "ready", content: { "application/json": { schema: Readiness } } },
    503: { description: "not ready", content: { "application/json": { schema: Readiness } } },
  },
});

const READY_STATES = new Set(["ok", "connected", "standby", "disabled"]);

export function registerHealth(app: App): void {
  app.openapi(healthz, (c) => c.json({ status: "ok" as const }, 200));
  app.openapi(readyz, async (c) => {
    const checks = await c.var.deps.readiness.check();
    const ready = Object.values(checks).every((s) => READY_STATES.has(s));
    return ready
      ? c.json({ status: "ready" as const, checks }, 200)
      : c.json({ status: "not_ready" as const, checks }, 503);
  });
}
