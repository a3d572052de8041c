import { setMaxListeners } from "node:events";
import { OpenAPIHono } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import { requestId } from "hono/request-id";
import { AppError, handleError, problemResponse } from "../errors.js";
import { IngestStats } from "../ingest/stats.js";
import { createMetrics } from "../metrics.js";
import { plainly, type ValidationIssue } from "../validation.js";
import { accessLog } from "./access-log.js";
import { compressReads } from "./compression.js";
import type { App, AppDeps, AppEnv } from "./context.js";
import { registerDocs } from "./docs.js";
import { registerHealth } from "./health.js";
import { registerMetrics } from "./metrics.js";
import { unstorableText } from "./schemas.js";
import { registerAdminAccountsConversations } from "./v1/admin.accounts.conversations.js";
import { registerAdminAccountsDelete } from "./v1/admin.accounts.delete.js";
import { registerAdminAccountsList } from "./v1/admin.accounts.list.js";
import { registerAdminAccountsSync } from "./v1/admin.accounts.sync.js";
import { registerAdminCalls } from "./v1/admin.calls.js";
import { registerAdminIngest } from "./v1/admin.ingest.js";
import { registerCallsGet } from "./v1/calls.get.js";
import { registerCallsList } from "./v1/calls.list.js";
import { registerConversationsEvents } from "./v1/conversations.events.js";
import { registerConversationsGet } from "./v1/conversations.get.js";
import { registerConversationsList } from "./v1/conversations.list.js";
import { registerConversationsMessages } from "./v1/conversations.messages.js";
import { registerConversationsPatch } from "./v1/conversations.patch.js";
import { registerPushDevices } from "./v1/push-devices.js";
import { registerSync } from "./v1/sync.js";
import { registerTokens } from "./v1/tokens.js";

const MAX_BODY_BYTES = 64 * 1024;

/** Turns a zod failure into one line naming each bad field. */
function describeIssues(issues: ValidationIssue[]): string {
  const seen = new Set<string>();
  const lines: string[] = [];
  for (const issue of issues) {
    const where = issue.path.length ? issue.path.map(String).join(".") : "body";
    // The first problem of a field says it: a time that is no time is not also out of range.
    if (seen.has(where)) continue;
    seen.add(where);
    lines.push(`${where}: ${plainly(issue)}`);
  }
  return lines.join("; ");
}

/** The methods of the routes that take a body. */
const BODY_METHODS = new Set(["POST", "PATCH", "PUT"]);

export function createApp(deps: AppDeps): App {
  const ingest = deps.ingest ?? disabledIngest();
  const full: Required<AppDeps> = {
    clock: () => new Date(),
    ...deps,
    ingest,
    // Without a database connection gauge: building the app must not touch the store.
    metrics: deps.metrics ?? createMetrics({ ingest }),
    stopping: deps.stopping ?? new AbortController().signal,
  };
  // Every held long-poll listens for it: one listener each, not a leak.
  setMaxListeners(0, full.stopping);
  const app: App = new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (!result.success) {
        throw new AppError("validation_failed", describeIssues(result.error.issues));
      }
      const bad = unstorableText(result.data);
      if (bad !== null) throw new AppError("validation_failed", `${bad.path}: ${bad.problem}`);
    },
  });

  app.use(requestId({ headerName: "x-request-id" }));
  app.use(async (c, next) => {
    c.set("deps", full);
    c.set("logger", full.logger.child({ requestId: c.var.requestId }));
    await next();
  });
  app.use(accessLog);
  app.use(compressReads);
  const limitBody = bodyLimit({
    maxSize: MAX_BODY_BYTES,
    onError: (c) =>
      problemResponse(c, "payload_too_large", `request body exceeds ${MAX_BODY_BYTES} bytes`),
  });
  // Only POST and PATCH routes (and PUT, should one come) read a body; any other method's is
  // never read, so never limited (its routes declare no 413). The check asks for the request's
  // body stream, for which the Node adapter builds a whole fetch Request (headers, stream, abort
  // controller) from the incoming message: for small syncs, 40% of what outlived their answers
  // into the old generation.
  app.use((c, next) => (BODY_METHODS.has(c.req.method) ? limitBody(c, next) : next()));

  registerHealth(app);
  registerDocs(app);
  registerMetrics(app);
  registerTokens(app);
  registerSync(app);
  registerConversationsList(app);
  registerConversationsGet(app);
  registerConversationsMessages(app);
  registerConversationsEvents(app);
  registerConversationsPatch(app);
  registerPushDevices(app);
  registerCallsList(app);
  registerCallsGet(app);

  registerAdminAccountsList(app);
  registerAdminAccountsConversations(app);
  registerAdminAccountsSync(app);
  registerAdminAccountsDelete(app);
  registerAdminCalls(app);
  registerAdminIngest(app);

  app.notFound((c) => {
    const allowed = allowedMethods(app, c.req.path);
    const method = c.req.method === "HEAD" ? "GET" : c.req.method;
    // A route of this method that found nothing itself (c.notFound()) is a 404 all the same.
    if (allowed.length > 0 && !allowed.includes(method)) {
      return problemResponse(
        c,
        "method_not_allowed",
        `${c.req.path} takes ${allowed.join(", ")}, not ${c.req.method}`,
        { allow: allowed.join(", ") },
      );
    }
    return problemResponse(c, "not_found", `no route for ${c.req.method} ${c.req.path}`);
  });
  app.onError((err, c) => handleError(err, c, c.var.logger ?? full.logger));
  return app;
}

/** The methods the app's routes take at this path (a wrong method is told apart from a wrong path). */
function allowedMethods(app: App, path: string): string[] {
  const methods = new Set<string>();
  for (const route of app.routes) {
    if (route.method === "ALL" || methods.has(route.method)) continue;
    const pattern = route.path
      .split("/")
      .map((part) => (part.startsWith(":") ? "[^/]+" : part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")))
      .join("/");
    if (new RegExp(`^${pattern}$`).test(path)) methods.add(route.method);
  }
  return [...methods];
}

/** An app without ingest in this process (tests, the OpenAPI generator) reports it as disabled. */
function disabledIngest(): IngestStats {
  const stats = new IngestStats();
  stats.role = "disabled";
  return stats;
}

export type { AppEnv };
