import { Writable } from "node:stream";
import { Hono } from "hono";
import { requestId } from "hono/request-id";
import { describe, expect, it } from "vitest";
import { AppError, ERROR_CODES, handleError, statusOf } from "../../src/errors.js";
import { createLogger } from "../../src/logger.js";

function appThrowing(err: Error) {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  const logger = createLogger("info", sink);
  const app = new Hono<{ Variables: { requestId: string } }>();
  app.use(requestId());
  app.get("/", () => {
    throw err;
  });
  app.onError((e, c) => handleError(e, c, logger));
  return { app, lines };
}

describe("problem+json errors", () => {
  it("maps every code to one 4xx/5xx status", () => {
    for (const code of ERROR_CODES) expect(statusOf(code)).toBeGreaterThanOrEqual(400);
    expect(statusOf("position_expired")).toBe(410);
    expect(statusOf("too_many_attempts")).toBe(429);
  });

  it("writes a known error as its problem, with headers", async () => {
    const { app } = appThrowing(
      new AppError("too_many_attempts", "slow down", { headers: { "retry-after": "30" } }),
    );
    const res = await app.request("/", { headers: { "x-request-id": "r1" } });
    expect(res.status).toBe(429);
    expect(res.headers.get("retry-after")).toBe("30");
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    expect(await res.json()).toEqual({
      type: "urn:syncside:problem:too_many_attempts",
      title: "Too many attempts",
      status: 429,
      detail: "slow down",
      code: "too_many_attempts",
      request_id: "r1",
    });
  });

  it("never shows internals on a 500, but logs them with the request id", async () => {
    const { app, lines } = appThrowing(
      new Error("password authentication failed for user syncside at 10.0.0.5"),
    );
    const res = await app.request("/", { headers: { "x-request-id": "r2" } });
    expect(res.status).toBe(500);
    const text = await res.text();
    expect(text).not.toContain("10.0.0.5");
    expect(JSON.parse(text)).toEqual({
      type: "urn:syncside:problem:internal_error",
      title: "Internal server error",
      status: 500,
      detail: "the server failed to handle this request; quote request id r2 when reporting it",
      code: "internal_error",
      request_id: "r2",
    });
    expect(lines.join("")).toContain("10.0.0.5");
    expect(lines.join("")).toContain('"requestId":"r2"');
  });
});

describe("logger", () => {
  it("redacts passwords, tokens and bodies", () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _e, done) {
        lines.push(String(chunk));
        done();
      },
    });
    createLogger("info", sink).info(
      { password: "hunter2", token: "sst_abc", body: "secret text", user: { password: "x" } },
      "login",
    );
    const line = lines.join("");
    for (const secret of ["hunter2", "sst_abc", "secret text", '"x"'])
      expect(line).not.toContain(secret);
    expect(line).toContain("[redacted]");
  });
});
