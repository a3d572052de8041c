import { gunzipSync } from "node:zlib";
import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { compressReads } from "../../src/api/compression.js";

const big = {
  items: Array.from({ length: 200 }, (_, i) => ({ id: `m${i}`, body: "hello there" })),
};

function app() {
  const a = new Hono();
  a.use(compressReads);
  a.get("/big", (c) => c.json(big));
  a.post("/big", (c) => c.json(big));
  return a;
}

const gzip = { "accept-encoding": "gzip, deflate, br" };

describe("compressReads", () => {
  it("gzips a large GET answer for a client that accepts it, and says so", async () => {
    const res = await app().request("/big", { headers: gzip });
    expect(res.headers.get("content-encoding")).toBe("gzip");
    expect(res.headers.get("vary")).toMatch(/accept-encoding/i);
    const bytes = Buffer.from(await res.arrayBuffer());
    expect(bytes.length).toBeLessThan(JSON.stringify(big).length / 4);
    expect(JSON.parse(gunzipSync(bytes).toString("utf8"))).toEqual(big);
  });

  it("answers plainly when the client does not ask", async () => {
    const plain = await app().request("/big");
    expect(plain.headers.get("content-encoding")).toBeNull();
    expect(await plain.json()).toEqual(big);
  });

  it("passes an answer it does not compress on as the route built it, Vary and all", async () => {
    // Rebuilt, an answer the Node adapter holds as a buffer would become a web stream.
    let built: Response | undefined;
    const a = new Hono();
    a.use(compressReads);
    a.get("/big", (c) => {
      built = c.json(big);
      return built;
    });
    const res = await a.request("/big");
    expect(res).toBe(built);
    expect(res.headers.get("vary")).toMatch(/accept-encoding/i);
    expect(res.headers.get("content-encoding")).toBeNull();
  });

  it("never compresses what is not a GET answer, where a secret may stand", async () => {
    const res = await app().request("/big", { method: "POST", headers: gzip });
    expect(res.headers.get("content-encoding")).toBeNull();
    expect(await res.json()).toEqual(big);
  });
});
