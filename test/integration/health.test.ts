import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectContract } from "../helpers/contract.js";
import { createHarness, type Harness } from "../helpers/harness.js";

describe("operations routes", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness();
  });
  afterAll(() => h.close());

  it("GET /healthz answers ok", async () => {
    const res = await h.app.request("/healthz");
    expect(await expectContract(res, "GET", "/healthz")).toEqual({ status: "ok" });
  });

  it("GET /readyz is 200 when every check passes and 503 when one fails", async () => {
    const ok = await h.app.request("/readyz");
    expect(ok.status).toBe(200);
    expect(await expectContract(ok, "GET", "/readyz")).toEqual({
      status: "ready",
      checks: { database: "ok" },
    });
  });

  it("GET /openapi.yaml serves the contract and /docs renders it without any CDN", async () => {
    const spec = await h.app.request("/openapi.yaml");
    expect(spec.status).toBe(200);
    expect(await spec.text()).toContain("openapi: 3.1.0");
    const docs = await h.app.request("/docs");
    const html = await docs.text();
    expect(html).toContain("/docs/assets/swagger-ui-bundle.js");
    expect(html).not.toMatch(/https?:\/\//);
    const bundle = await h.app.request("/docs/assets/swagger-ui-bundle.js");
    expect(bundle.status).toBe(200);
    expect((await bundle.text()).length).toBeGreaterThan(100_000);
  });

  it("answers unknown routes with a problem+json 404 carrying the request id", async () => {
    const res = await h.app.request("/v1/nope", { headers: { "x-request-id": "req-123" } });
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    expect(res.headers.get("x-request-id")).toBe("req-123");
    expect(await res.json()).toEqual({
      type: "urn:syncside:problem:not_found",
      title: "Not found",
      status: 404,
      detail: "no route for GET /v1/nope",
      code: "not_found",
      request_id: "req-123",
    });
  });

  it("answers a known route with a wrong method 405, naming the methods it takes", async () => {
    const sync = await h.app.request("/v1/sync", { method: "POST" });
    expect(sync.status).toBe(405);
    expect(sync.headers.get("allow")).toBe("GET");
    expect(await sync.json()).toMatchObject({
      code: "method_not_allowed",
      detail: "/v1/sync takes GET, not POST",
    });
    const conversation = await h.app.request("/v1/conversations/bob%40example.org", {
      method: "PUT",
    });
    expect(conversation.status).toBe(405);
    expect(conversation.headers.get("allow")).toBe("GET, PATCH");
    // A path no route has stays a 404 whatever the method, and so does a route of the method
    // that found nothing itself.
    expect((await h.app.request("/v1/conversations/a/b/c", { method: "PUT" })).status).toBe(404);
    const asset = await h.app.request("/docs/assets/no-such-file.js");
    expect([asset.status, asset.headers.get("allow")]).toEqual([404, null]);
    // Names every object has are no assets either.
    for (const name of ["constructor", "__proto__", "toString", "hasOwnProperty"]) {
      expect((await h.app.request(`/docs/assets/${name}`)).status).toBe(404);
    }
  });
});
