import { createECDH, randomBytes, randomInt } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { appendBatch } from "../../src/store/events.js";
import { expectContract, specOperations } from "../helpers/contract.js";
import { msg } from "../helpers/copies.js";
import { createUser, type TestUser } from "../helpers/ejabberd.js";
import { createHarness, fromAddress, type Harness } from "../helpers/harness.js";

/**
 * Every route of openapi.yaml, one parameter or body field at a time, with values a client
 * should never send: each must get an answer the contract declares (a clear 4xx problem+json
 * for bad input), never a 5xx. New routes and parameters are covered as the spec gains them.
 */

/** Random text does not compress: as long as a schema allows, it must still fit every index. */
const randomText = (length: number) => randomBytes(length).toString("base64url").slice(0, length);
/** Random 3-byte characters (CJK): as many characters, three times the bytes. */
const randomCjk = (length: number) =>
  Array.from({ length }, () => String.fromCharCode(0x4e00 + randomInt(0x5000))).join("");
const base64urlJson = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

const NUL = "\u0000";

/** Values for path and query parameters, already URL-encoded where they are meant to be. */
const HOSTILE_VALUES: string[] = [
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
    randomText(1024),
    randomCjk(1024),
    `${randomText(1023)}@${randomText(1023)}`,
    `${randomText(1500)}@${randomText(1500)}`,
    `${randomCjk(341)}@example.org`,
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
    // Cursors of the right shapes, holding what no cursor this API issues holds.
    base64urlJson([NUL]),
    base64urlJson([0, NUL]),
    base64urlJson(["2026-11-26T08:00:00.000Z", 1]),
    base64urlJson([null, -1]),
    base64urlJson(["+275760-09-13T00:00:00.000Z", 1]),
    // Chat-list cursors at and past the edges of the times a store holds.
    base64urlJson(["0000-01-01T00:00:00Z", 1]),
    base64urlJson(["0000-12-31T23:59:59.999Z", 1]),
    base64urlJson(["0001-01-01T00:00:00Z", 1]),
    base64urlJson(["9999-12-31T23:59:59.999Z", 1]),
    // History cursors at and past the edges of the times a store holds.
    base64urlJson(["history", 8.64e15, 1]),
    base64urlJson(["history", -8.64e15, 1]),
    base64urlJson(["history", Date.parse("0001-01-01T00:00:00Z") - 1, 1]),
    base64urlJson(["history", Date.parse("9999-12-31T23:59:59.999Z") + 1, 1]),
    base64urlJson(["history", 0, -1]),
    base64urlJson(["history", 0, 2 ** 63]),
    base64urlJson(["history", 0]),
    base64urlJson(["changed", 0, 0]),
  ].map(encodeURIComponent),
  // Raw, as a broken client sends them: percent signs that decode to nothing valid.
  "%",
  "%FF",
  "%zz",
  "%E0%A4%A",
  "%ED%A0%80",
];

/** NUL in any parameter is refused as invalid, naming the parameter. */
const NUL_VALUES = [encodeURIComponent(NUL), encodeURIComponent(`bob${NUL}@example.org`)];

/** Values for each field of a JSON body, of every wrong kind and at the edges of the right one. */
const HOSTILE_FIELDS: unknown[] = [
  randomText(1024),
  randomText(4096),
  randomCjk(100),
  randomCjk(1024),
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
  "9999-12-31T23:59:59Z",
  "9999-12-31T23:59:59-01:00",
  "0000-01-01T00:00:00Z",
  "+275760-09-13T00:00:00.000Z",
  "2026-13-45T99:99:99Z",
  "2026-11-26T08:00:00+99:00",
];

/** Whole bodies that no route takes: each is refused as bad input. */
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
  let alice: TestUser;
  const bob = "bob@example.org";
  /** A fresh valid body per route that takes one: each field is made hostile in turn. */
  const bodies = new Map<string, () => Promise<Record<string, unknown>>>();
  let addresses = 0;

  beforeAll(async () => {
    const admin = await createUser(ejabberd, "admin");
    alice = await createUser(ejabberd, "alice");
    h = await createHarness({
      env: {
        XMPP_SERVICE: ejabberd.service,
        XMPP_DOMAIN: ejabberd.domain,
        ADMIN_JIDS: admin.jid,
      },
    });
    await appendBatch(
      h.store.db,
      { copies: [msg(bob, alice.jid, "m1", "hello"), msg(alice.jid, bob, "m2", "hi")] },
      { isLocal: (jid) => jid.endsWith(`@${ejabberd.domain}`), callRingTimeoutMs: 60_000 },
    );
    accountToken = await h.token(alice.jid);
    adminToken = await h.token(admin.jid, "admin");
    // A real account's password, so hostile labels reach the token's insert. A fresh account
    // each time: failed logins lock an account out for a while.
    bodies.set("POST /v1/tokens", async () => {
      const user = await createUser(ejabberd, "login");
      return { jid: user.jid, password: user.password, label: "phone" };
    });
    bodies.set("PATCH /v1/conversations/{peer}", async () => ({
      pinned: true,
      muted_until: "2026-12-01T10:00:00Z",
      archived: false,
      read_until: "m1",
    }));
    bodies.set("POST /v1/push/devices", async () => ({
      platform: "apns",
      token: "a1b2c3",
      voip_token: "d4e5f6",
      app_id: "org.example.chat",
      environment: "sandbox",
      encryption: { p256dh: p256dhKey(), auth: randomBytes(16).toString("base64url") },
    }));
  });
  afterAll(() => h.close());

  /** A valid value for each path parameter, so one other part can be made hostile at a time. */
  function validPath(template: string): string {
    return template
      .replace("{peer}", encodeURIComponent(bob))
      .replace("{jid}", encodeURIComponent(alice.jid))
      .replace("{id}", "1");
  }

  /** Sends one request; its answer must be one the contract declares and not a 5xx. */
  async function send(method: string, path: string, init: RequestInit = {}) {
    const token = path.startsWith("/v1/admin/") ? adminToken : accountToken;
    // Each request from its own client address, or failed logins would soon be refused with 429.
    const address = `198.51.${Math.floor(++addresses / 250)}.${addresses % 250}`;
    const res = await h.app.request(
      path,
      { ...init, method, headers: { authorization: `Bearer ${token}`, ...init.headers } },
      fromAddress(address),
    );
    const body = typeof init.body === "string" ? ` ${init.body.slice(0, 120)}` : "";
    const what = `${method} ${path.slice(0, 120)}${body} → ${res.status}`;
    expect(res.status, what).toBeLessThan(500);
    // Declared status, content type and schema, problem+json for every error.
    const answer = await expectContract<{ code?: string; detail?: string }>(res, method, path);
    return { status: res.status, code: answer?.code, detail: answer?.detail, what };
  }

  const operations = specOperations().filter((op) => op.path.startsWith("/v1/"));

  it.each(operations.filter((op) => op.parameters.length > 0))(
    "$method $path: each parameter, with every hostile value",
    async ({ method, path, parameters }) => {
      const valid = await bodies.get(`${method} ${path}`)?.();
      // With a valid body, a request only fails on the parameter under test.
      const init: RequestInit = valid
        ? { body: JSON.stringify(valid), headers: { "content-type": "application/json" } }
        : {};
      const at = (name: string, where: string, value: string) =>
        where === "path"
          ? validPath(path.replace(`{${name}}`, value))
          : `${validPath(path)}?${name}=${value}`;
      for (const parameter of parameters) {
        for (const value of HOSTILE_VALUES) {
          // An empty path segment is another URL (a 404 of the router), not a bad parameter.
          if (parameter.in === "path" && value === "") continue;
          await send(method, at(parameter.name, parameter.in, value), init);
        }
        for (const value of NUL_VALUES) {
          const answer = await send(method, at(parameter.name, parameter.in, value), init);
          expect([answer.status, answer.code], answer.what).toEqual([400, "validation_failed"]);
          expect(answer.detail).toContain(parameter.name);
        }
        if (parameter.in === "query") {
          await send(method, `${validPath(path)}?${parameter.name}=1&${parameter.name}=2`, init);
        }
      }
    },
    120_000,
  );

  it.each(operations.filter((op) => op.hasBody))(
    "$method $path: each body field with every hostile value, and hostile whole bodies",
    async ({ method, path }) => {
      const key = `${method} ${path}`;
      const makeBody = bodies.get(key);
      // A route that takes a body needs a valid one here, or its fields go untested.
      expect(makeBody, `no valid body for ${key} in this test`).toBeDefined();
      const post = (body: string, contentType = "application/json") =>
        send(method, validPath(path), { body, headers: { "content-type": contentType } });
      const fields = Object.keys((await makeBody?.()) ?? {});
      for (const field of [...fields, "unknown_field"]) {
        const valid = await makeBody?.();
        for (const value of HOSTILE_FIELDS) {
          await post(JSON.stringify({ ...valid, [field]: value }));
        }
        // NUL, and a string cut inside an emoji (JSON.stringify writes the lone half as \ud83d).
        for (const text of [`a${NUL}b`, "a\ud83db"]) {
          const answer = await post(JSON.stringify({ ...valid, [field]: text }));
          // A field the schema does not know is dropped or refused, never stored.
          if (field !== "unknown_field") {
            expect([answer.status, answer.code], answer.what).toEqual([400, "validation_failed"]);
            expect(answer.detail).toContain(field);
          }
        }
      }
      for (const [label, body, contentType] of HOSTILE_BODIES) {
        const answer = await post(body, contentType);
        // The same answers on every route: a bad body is a bad field named `body` (or too big).
        if (answer.status === 413) expect(answer.code, label).toBe("payload_too_large");
        else {
          expect([answer.status, answer.code], `${label}: ${answer.what}`).toEqual([
            400,
            "validation_failed",
          ]);
        }
        if (label === "JSON sent as text" || label === "truncated JSON" || label === "empty") {
          expect(answer.detail, `${label}: ${answer.what}`).toMatch(/^body: /);
        }
      }
    },
    120_000,
  );

  it.each(operations.filter((op) => !op.hasBody && op.method !== "GET"))(
    "$method $path: a body, small or over the size limit, is ignored as the route takes none",
    async ({ method, path }) => {
      // Not alice: an erase would take her token from the tests that follow.
      const target = validPath(
        path.replace("{jid}", encodeURIComponent(`nobody@${ejabberd.domain}`)),
      );
      for (const body of ["{}", JSON.stringify({ pad: "x".repeat(200_000) })]) {
        const answer = await send(method, target, {
          body,
          headers: { "content-type": "application/json" },
        });
        expect(answer.status, answer.what).not.toBe(413);
      }
    },
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

/** A base64url uncompressed P-256 public key, as a phone registers it. */
function p256dhKey(): string {
  const key = createECDH("prime256v1");
  key.generateKeys();
  return key.getPublicKey().toString("base64url");
}
