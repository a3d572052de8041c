import { z } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import { AppError, ERROR_CODES, type ErrorCode, statusOf } from "../errors.js";
import type { AppEnv } from "./context.js";

export const ProblemSchema = z
  .object({
    type: z.string().openapi({ example: "urn:syncside:problem:not_found" }),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.enum(ERROR_CODES),
    request_id: z.string(),
  })
  .openapi("Problem", { description: "RFC 9457 problem details with a stable `code`" });

const problemContent = { "application/problem+json": { schema: ProblemSchema } };

/** The error responses a route can give, grouped by status, for its OpenAPI definition. */
export function errorResponses(...codes: ErrorCode[]) {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of [...codes, "internal_error" as const]) {
    const status = statusOf(code);
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  return Object.fromEntries(
    [...byStatus].map(([status, list]) => [
      status,
      { description: `problem: ${[...new Set(list)].join(", ")}`, content: problemContent },
    ]),
  );
}

/** RFC 3339 UTC timestamps, as every time in the API is written. */
export const Timestamp = z
  .string()
  .openapi({ format: "date-time", example: "2026-11-26T08:00:00.000Z" });

export const BareJid = z.string().openapi({
  example: "bob@example.org",
  description: "a bare JID: local@domain, or a bare domain for a component or the server",
});

export function iso(date: Date | null | undefined): string | null {
  return date ? date.toISOString() : null;
}

/** A UTF-16 surrogate without its other half: no UTF-8 text can hold it. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Where a validated input holds a character no stored text can: U+0000 (PostgreSQL's text and
 * jsonb cannot store it, and XML forbids it in stanzas, so no JID, id or token contains it) or a
 * lone UTF-16 surrogate (a JSON string cut inside an emoji: not Unicode text, and jsonb refuses
 * it). Returns the field path ("read_until", "encryption.auth") with what is wrong, or null.
 */
export function unstorableText(
  value: unknown,
  path: string[] = [],
): { path: string; problem: string } | null {
  if (typeof value === "string") {
    const at = path.join(".") || "body";
    if (value.includes("\u0000"))
      return { path: at, problem: "must not contain the character U+0000" };
    if (LONE_SURROGATE.test(value)) {
      return { path: at, problem: "must be Unicode text (it holds a lone UTF-16 surrogate)" };
    }
    return null;
  }
  if (value && typeof value === "object") {
    for (const [key, inner] of Object.entries(value)) {
      const found = unstorableText(inner, [...path, key]);
      if (found !== null) return found;
    }
  }
  return null;
}

const JSON_TYPE = /^application\/([\w.-]+\+)?json$/i;

/**
 * Middleware for routes that take a JSON body: a body that is not JSON is a bad `body` field,
 * answered like any other validation failure (hono's own check answers a bare 400, and reads a
 * body of another type as no body at all). Runs after authentication.
 */
export const jsonBody: MiddlewareHandler<AppEnv> = async (c, next) => {
  const type = (c.req.header("content-type") ?? "").split(";")[0]?.trim() ?? "";
  if (!JSON_TYPE.test(type)) {
    throw new AppError("validation_failed", "body: expected application/json");
  }
  // hono caches the parsed body, so the route's validator reads this same result.
  await c.req.json().catch(() => {
    throw new AppError("validation_failed", "body: malformed JSON");
  });
  await next();
};
