import { createHash, timingSafeEqual } from "node:crypto";
import { createRoute, z } from "@hono/zod-openapi";
import { AppError } from "../errors.js";
import type { App } from "./context.js";
import { errorResponses } from "./schemas.js";

const route = createRoute({
  method: "get",
  path: "/metrics",
  tags: ["operations"],
  summary: "Prometheus metrics of this process",
  description:
    "HTTP durations by route and status, open long-polls, ingest role, lag, events by kind, rejects by reason, push outcomes and database connections. Unauthenticated unless METRICS_TOKEN is set (then `Authorization: Bearer <METRICS_TOKEN>`); either way, do not expose it publicly.",
  responses: {
    200: {
      description: "Prometheus text exposition format 0.0.4",
      content: { "text/plain": { schema: z.string() } },
    },
    ...errorResponses("unauthorized"),
  },
});

function digest(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

/** Equal-length digests, so the comparison takes the same time whatever the guess. */
function sameSecret(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected));
}

export function registerMetrics(app: App): void {
  app.openapi(route, async (c) => {
    const { config, metrics } = c.var.deps;
    if (config.metricsToken !== undefined) {
      const given = /^Bearer\s+(\S+)\s*$/i.exec(c.req.header("authorization") ?? "")?.[1] ?? "";
      if (!sameSecret(given, config.metricsToken)) {
        throw new AppError("unauthorized", "this route needs the METRICS_TOKEN bearer token", {
          headers: { "www-authenticate": 'Bearer realm="syncside-metrics"' },
        });
      }
    }
    const text = await metrics.registry.metrics();
    return c.text(text, 200, { "content-type": metrics.registry.contentType });
  });
}
