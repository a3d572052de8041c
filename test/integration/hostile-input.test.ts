import { createECDH, randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { appendBatch } from "../../src/store/events.js";
import { expectContract, specOperations } from "../helpers/contract.js";
import { msg } from "../helpers/copies.js";
import { createUser } from "../helpers/ejabberd.js";
import { createHarness, type Harness } from "../helpers/harness.js";

/**
 * Every route of openapi.yaml, one parameter or body field at a time, with values a client
 * should never send: each must get an answer the contract declares (a clear 4xx problem+json
 * for bad input), never a 5xx. New routes and parameters are covered as the spec gains them.
 */

/** Values for path and query parameters, already URL-encoded where they are meant to be. */
const HOSTILE_VALUES: [label: string, encoded: string][] = [
  ...[
    "",
    " ",
    "0",
    "-1",
    "1.5",
    "1e309",
    "NaN",
    "Infinity",
    "99999999999999999999999999",
    "-9223372036854775809",
    "x".repeat(5000),
    "\u0000",
    "💥",
    "../../etc/passwd",
    "a@b@c",
    "@",
    "alice@",
    "@example.org",
    "alice@example.org/phone",
    "null",
    "[]",
    "{}",
    "true",
    "'; drop table events; --",
  ].map((v): [string, string] => [JSON.stringify(v.slice(0, 40)), encodeURIComponent(v)]),
  // Raw, as a broken client sends them: percent signs that decode to nothing valid.
  ["raw %", "%"],
  ["raw %FF", "%FF"],
  ["raw %zz", "%zz"],
  ["raw truncated UTF-8", "%E0%A4%A"],
  ["raw UTF-8 of a lone surrogate", "%ED%A0%80"],
];

/** Values for each field of a JSON body, of every wrong kind and at the edges of the right one. */
const HOSTILE_FIELDS: unknown[] = [
  // Random text does not compress: as long as a schema allows, it must still fit every index.
  randomBytes(768).toString("base64url"),
  randomBytes(3072).toString("base64url"),
  null,
  0,
  -1,
  1e308,
  true,
  "",
  "x".repeat(100_000),
  [],
  {},
  { nested: { deeper: [1, 2, 3] } },
  "💥",
  "\u0000",
  "9999-12-31T23:59:59Z",
  "+275760-09-13T00:00:00.000Z",
  "0001-01-01T00:00:00Z",
  "2026-13-45T99:99:99Z",
  "2026-11-26T08:00:00+99:00",
];

/** Whole bodies that are not what any route takes. */
const HOSTILE_BODIES: [label: string, body: string, contentType: string][] = [
  ["empty", "", "application/json"],
  ["truncated JSON", '{"pinned": tr', "application/json"],
  ["an array", "[]", "application/json"],
  ["null", "null", "application/json"],
  ["a string", '"hello"', "application/json"],
  ["a number", "42", "application/json"],
  ["deep nesting", `${"[".repeat(5000)}${"]".repeat(5000)}`, "application/json"],
  ["over the size limit", JSON.stringify({ pad: "x".repeat(200_000) }), "application/json"],
  ["a lone surrogate", '{"label": "\\ud800"}', "application/json"],
  ["form data", "pinned=true", "application/x-www-form-urlencoded"],
  ["JSON sent as text", "{}", "text/plain"],
];

describe("hostile input on every route", () => {
  const ejabberd = inject("ejabberd");
  let h: Harness;
  let accountToken: string;
  let adminToken: string;
  let alice: string;
  const bob = "bob@example.org";
  /** A valid body per route that takes one: each field is made hostile in turn. */
  const bodies = new Map<string, Record<string, unknown>>();

  beforeAll(async () => {
    const admin = await createUser(ejabberd, "admin");
    h = await createHarness({
      env: {
        XMPP_SERVICE: ejabberd.service,
        XMPP_DOMAIN: ejabberd.domain,
        ADMIN_JIDS: admin.jid,
      },
    });
    alice = `alice@${ejabberd.domain}`;
    await appendBatch(
      h.store.db,
      { copies: [msg(bob, alice, "m1", "hello"), msg(alice, bob, "m2", "hi")] },
      { isLocal: (jid) => jid.endsWith(`@${ejabberd.domain}`), callRingTimeoutMs: 60_000 },
    );
    accountToken = await h.token(alice);
    adminToken = await h.token(admin.jid, "admin");
    const ecdh = createECDH("prime256v1");
    ecdh.generateKeys();
    bodies.set("POST /v1/tokens", {
      jid: `nobody@${ejabberd.domain}`,
      password: "not the password",
      label: "phone",
    });
    bodies.set("PATCH /v1/conversations/{peer}", {
      pinned: true,
      muted_until: "2026-12-01T10:00:00Z",
      archived: false,
      read_until: "m1",
    });
    bodies.set("POST /v1/push/devices", {
      platform: "apns",
      token: "a1b2c3",
      voip_token: "d4e5f6",
      app_id: "org.example.chat",
      environment: "sandbox",
      encryption: {
        p256dh: ecdh.getPublicKey().toString("base64url"),
        auth: randomBytes(16).toString("base64url"),
      },
    });
  });
  afterAll(() => h.close());

  /** A valid value for each path parameter, so one other part can be made hostile at a time. */
  function validPath(template: string): string {
    return template
      .replace("{peer}", encodeURIComponent(bob))
      .replace("{jid}", encodeURIComponent(alice))
      .replace("{id}", "1");
  }

  async function expectAnswered(method: string, path: string, init: RequestInit = {}) {
    const token = path.startsWith("/v1/admin/") ? adminToken : accountToken;
    const res = await h.get(path, token, { method, ...init });
    const body = typeof init.body === "string" ? ` ${init.body.slice(0, 120)}` : "";
    const what = `${method} ${path.slice(0, 120)}${body} → ${res.status}`;
    expect(res.status, what).toBeLessThan(500);
    // Declared status, content type and schema, problem+json for every error.
    await expectContract(res, method, path);
    return res.status;
  }

  const operations = specOperations().filter((op) => op.path.startsWith("/v1/"));

  it.each(operations.filter((op) => op.parameters.length > 0))(
    "$method $path: each parameter, with every hostile value",
    async ({ method, path, parameters }) => {
      for (const parameter of parameters) {
        for (const [, value] of HOSTILE_VALUES) {
          // An empty path segment is another URL (a 404 of the router), not a bad parameter.
          if (parameter.in === "path" && value === "") continue;
          const target =
            parameter.in === "path"
              ? validPath(path.replace(`{${parameter.name}}`, value))
              : `${validPath(path)}?${parameter.name}=${value}`;
          await expectAnswered(method, target);
        }
        if (parameter.in === "query") {
          await expectAnswered(
            method,
            `${validPath(path)}?${parameter.name}=1&${parameter.name}=2`,
          );
        }
      }
    },
    60_000,
  );

  it.each(operations.filter((op) => op.hasBody))(
    "$method $path: each body field with every hostile value, and hostile whole bodies",
    async ({ method, path }) => {
      const key = `${method} ${path}`;
      const valid = bodies.get(key);
      // A route that takes a body needs a valid one here, or its fields go untested.
      expect(valid, `no valid body for ${key} in this test`).toBeDefined();
      const send = (body: string, contentType = "application/json") =>
        expectAnswered(method, validPath(path), {
          body,
          headers: { "content-type": contentType },
        });
      const statuses = new Set<number>();
      for (const field of [...Object.keys(valid ?? {}), "unknown_field"]) {
        for (const value of HOSTILE_FIELDS) {
          statuses.add(await send(JSON.stringify({ ...valid, [field]: value })));
        }
      }
      for (const [, body, contentType] of HOSTILE_BODIES) {
        statuses.add(await send(body, contentType));
      }
      // Bad input is refused as such, not by some other failure that happens to be a 4xx.
      expect([...statuses].some((s) => s === 400 || s === 413 || s === 415)).toBe(true);
    },
    60_000,
  );

  it("answers a garbled or oversized Authorization header with 401", async () => {
    for (const header of [
      "Bearer",
      "Bearer ",
      "bearer sst_x",
      "Basic YWxpY2U6cGFzcw==",
      `Bearer ${"x".repeat(10_000)}`,
      "Bearer \u00ff\u00fe",
      "Bearer sst_a sst_b",
    ]) {
      const res = await h.get("/v1/sync", "", { headers: { authorization: header } });
      expect(res.status, header.slice(0, 30)).toBe(401);
      await expectContract(res, "GET", "/v1/sync");
    }
  });
});
