import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { Logger } from "./logger.js";

/** Stable, documented error codes: clients switch on these, never on titles or details. */
export const ERROR_CODES = [
  "bad_request",
  "validation_failed",
  "invalid_position",
  "unauthorized",
  "invalid_credentials",
  "forbidden",
  "not_found",
  "method_not_allowed",
  "position_expired",
  "payload_too_large",
  "too_many_attempts",
  "internal_error",
  "service_unavailable",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

const STATUS_AND_TITLE: Record<ErrorCode, [ContentfulStatusCode, string]> = {
  bad_request: [400, "Bad request"],
  validation_failed: [400, "Invalid request"],
  invalid_position: [400, "Invalid position"],
  unauthorized: [401, "Unauthorized"],
  invalid_credentials: [401, "Invalid credentials"],
  forbidden: [403, "Forbidden"],
  not_found: [404, "Not found"],
  method_not_allowed: [405, "Method not allowed"],
  position_expired: [410, "Position expired"],
  payload_too_large: [413, "Payload too large"],
  too_many_attempts: [429, "Too many attempts"],
  internal_error: [500, "Internal server error"],
  service_unavailable: [503, "Service unavailable"],
};

export function statusOf(code: ErrorCode): ContentfulStatusCode {
  return STATUS_AND_TITLE[code][0];
}

export class AppError extends HTTPException {
  readonly code: ErrorCode;
  readonly detail: string;
  readonly headers: Record<string, string>;

  constructor(code: ErrorCode, detail: string, options: { headers?: Record<string, string> } = {}) {
    super(statusOf(code), { message: detail });
    this.name = "AppError";
    this.code = code;
    this.detail = detail;
    this.headers = options.headers ?? {};
  }
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  request_id: string;
}

export function problem(code: ErrorCode, detail: string, requestId: string): Problem {
  const [status, title] = STATUS_AND_TITLE[code];
  return {
    type: `urn:syncside:problem:${code}`,
    title,
    status,
    detail,
    code,
    request_id: requestId,
  };
}

export function problemResponse(
  c: Context,
  code: ErrorCode,
  detail: string,
  headers: Record<string, string> = {},
): Response {
  const body = problem(code, detail, c.get("requestId") ?? "unknown");
  return c.body(JSON.stringify(body), body.status as ContentfulStatusCode, {
    ...headers,
    "content-type": "application/problem+json",
  });
}

/** The single error handler: known errors become their problem; anything else a bare 500. */
export function handleError(err: Error, c: Context, logger: Logger): Response {
  if (err instanceof AppError) return problemResponse(c, err.code, err.detail, err.headers);
  if (err instanceof HTTPException) {
    const status = err.status;
    if (status === 413) return problemResponse(c, "payload_too_large", "request body is too large");
    if (status < 500) return problemResponse(c, "bad_request", err.message || "bad request");
  }
  const requestId = c.get("requestId") ?? "unknown";
  logger.error({ err, requestId, path: c.req.path }, "unhandled error");
  return problemResponse(
    c,
    "internal_error",
    `the server failed to handle this request; quote request id ${requestId} when reporting it`,
  );
}
