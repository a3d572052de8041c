import type { Context, MiddlewareHandler } from "hono";
import { matchedRoutes } from "hono/route";
import type { AppEnv } from "./context.js";

/**
 * The route template that answered (`/v1/conversations/{peer}`), never the raw path: a label per
 * JID would grow the metrics without bound. Requests no route matched share one label.
 */
export function routeTemplate(c: Context): string {
  const route = matchedRoutes(c)
    .filter((r) => r.method !== "ALL")
    .at(-1);
  return route ? route.path.replace(/:([A-Za-z0-9_]+)(\{[^}]*\})?/g, "{$1}") : "unmatched";
}

/** One info line and one histogram sample per request, whatever the outcome. */
export const accessLog: MiddlewareHandler<AppEnv> = async (c, next) => {
  const started = performance.now();
  try {
    await next();
  } finally {
    const ms = performance.now() - started;
    const route = routeTemplate(c);
    const status = c.res.status;
    c.var.deps.metrics.httpDuration.observe(
      { method: c.req.method, route, status: String(status) },
      ms / 1000,
    );
    c.var.logger.info(
      { method: c.req.method, route, status, ms: Math.round(ms * 10) / 10 },
      "request",
    );
  }
};
