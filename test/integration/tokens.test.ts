import { eq } from "drizzle-orm";
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from "vitest";
import { createApp } from "../../src/api/app.js";
import { hashToken } from "../../src/api/auth.js";
import type { App } from "../../src/api/context.js";
import { loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/logger.js";
import { tokens } from "../../src/store/schema/tokens.js";
import { expectContract, specOperations } from "../helpers/contract.js";
import { createUser, type TestUser } from "../helpers/ejabberd.js";
import { createHarness, fromAddress, type Harness } from "../helpers/harness.js";

const DAY = 86_400_000;
const TTL = 30 * DAY;

interface Issued {
  id: string;
  token: string;
  jid: string;
  scope: string;
  expires_at: string;
}
interface Listed {
  tokens: { id: string; label: string; current: boolean; expires_at: string }[];
}
interface Problem {
  code: string;
  detail: string;
  request_id: string;
}

describe("tokens: POST /v1/tokens, GET /v1/tokens, DELETE /v1/tokens/{id}", () => {
  const ejabberd = inject("ejabberd");
  let h: Harness;
  let admin: TestUser;
  let now: Date;
  let addresses = 0;

  beforeAll(async () => {
    admin = await createUser(ejabberd, "admin");
    h = await createHarness({
      env: {
        XMPP_SERVICE: ejabberd.service,
        XMPP_DOMAIN: ejabberd.domain,
        ADMIN_JIDS: admin.jid,
      },
      deps: { clock: () => now },
    });
  });
  afterAll(() => h.close());
  beforeEach(() => {
    now = new Date(Math.floor(Date.now() / 1000) * 1000);
  });

  /** Each test logs in from its own client address unless it says otherwise. */
  const freshAddress = () => `198.51.100.${++addresses}`;

  function login(app: App, body: unknown, address = freshAddress(), headers = {}) {
    return app.request(
      "/v1/tokens",
      {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: typeof body === "string" ? body : JSON.stringify(body),
      },
      fromAddress(address),
    );
  }

  async function loginOk(user: TestUser, label = "phone", address?: string): Promise<Issued> {
    const res = await login(h.app, { jid: user.jid, password: user.password, label }, address);
    expect(res.status).toBe(201);
    return expectContract<Issued>(res, "POST", "/v1/tokens");
  }

  async function list(token: string): Promise<Response> {
    return h.get("/v1/tokens", token);
  }

  function problemBody(code: string, status: number, title: string, detail: string) {
    return {
      type: `urn:syncside:problem:${code}`,
      title,
      status,
      detail,
      code,
      request_id: expect.any(String),
    };
  }

  const invalidCredentials = problemBody(
    "invalid_credentials",
    401,
    "Invalid credentials",
    "the JID or password is wrong",
  );

  describe("login", () => {
    it("issues a token for the account's XMPP password, shown once, that then authenticates", async () => {
      const alice = await createUser(ejabberd, "alice");
      const issued = await loginOk(alice, "Alice's phone");
      expect(issued).toEqual({
        id: expect.stringMatching(/^tok_[\w-]{12}$/),
        token: expect.stringMatching(/^sst_[\w-]{43}$/),
        jid: alice.jid,
        scope: "account",
        expires_at: new Date(now.getTime() + TTL).toISOString(),
      });

      const [row] = await h.store.db.select().from(tokens).where(eq(tokens.id, issued.id));
      expect(row?.hash).toBe(hashToken(issued.token));
      expect(JSON.stringify(row)).not.toContain(issued.token);

      const res = await list(issued.token);
      expect(res.status).toBe(200);
      expect(await expectContract(res, "GET", "/v1/tokens")).toEqual({
        tokens: [
          {
            id: issued.id,
            label: "Alice's phone",
            scope: "account",
            created_at: now.toISOString(),
            last_used_at: now.toISOString(),
            expires_at: new Date(now.getTime() + TTL).toISOString(),
            current: true,
          },
        ],
      });
    });

    it.each([
      ["Latin-1", "josé"],
      ["beyond Latin-1", "用户"],
    ])("issues a token to an account whose name is not ASCII (%s)", async (_, name) => {
      const user = await createUser(ejabberd, name);
      expect(user.username).toContain(name);
      const issued = await loginOk(user);
      expect(issued.jid).toBe(user.jid);
      // And the password is still checked.
      const wrong = await login(h.app, { jid: user.jid, password: `${user.password}x` });
      expect(wrong.status).toBe(401);
    });

    it("accepts the JID in any case and without a label", async () => {
      const alice = await createUser(ejabberd, "alice");
      const res = await login(h.app, {
        jid: ` ${alice.jid.toUpperCase()} `,
        password: alice.password,
      });
      expect(res.status).toBe(201);
      const issued = await expectContract<Issued>(res, "POST", "/v1/tokens");
      expect(issued.jid).toBe(alice.jid);
      const listed = await expectContract<Listed>(await list(issued.token), "GET", "/v1/tokens");
      expect(listed.tokens.map((t) => t.label)).toEqual([""]);
    });

    it("takes a JID spelt with full-width letters or invisible characters for the account itself", async () => {
      // ejabberd prepares the name (nodeprep) and logs these in as alice: so must the token.
      const alice = await createUser(ejabberd, "alice");
      const [local, domain] = alice.jid.split("@") as [string, string];
      const fullWidth = [...local.toUpperCase()]
        .map((ch) => (/[A-Z]/.test(ch) ? String.fromCodePoint(ch.charCodeAt(0) + 0xfee0) : ch))
        .join("");
      const issued: Issued[] = [];
      for (const jid of [
        `${fullWidth}@${domain}`,
        `${local[0]}\u00AD${local.slice(1)}\u200B@${domain}`,
      ]) {
        const res = await login(h.app, { jid, password: alice.password });
        expect(res.status).toBe(201);
        issued.push(await expectContract<Issued>(res, "POST", "/v1/tokens"));
      }
      expect(issued.map((t) => t.jid)).toEqual([alice.jid, alice.jid]);
      // One account: each token lists both.
      const listed = await expectContract<Listed>(
        await list(issued[0]?.token ?? ""),
        "GET",
        "/v1/tokens",
      );
      expect(listed.tokens.map((t) => t.id).sort()).toEqual(issued.map((t) => t.id).sort());
    });

    it("refuses a revoked or an expired token on every route that takes one", async () => {
      const user = `gone-${addresses}@example.org`;
      const [revoked, expired] = [await h.token(user, "admin"), await h.token(user, "admin")];
      await h.store.db
        .update(tokens)
        .set({ revokedAt: now })
        .where(eq(tokens.hash, hashToken(revoked)));
      await h.store.db
        .update(tokens)
        .set({ expiresAt: new Date(now.getTime() - 1000) })
        .where(eq(tokens.hash, hashToken(expired)));
      const routes = specOperations().filter((op) => op.bearer);
      expect(routes.length).toBeGreaterThan(10);
      for (const { method, path } of routes) {
        const concrete = path
          .replace("{peer}", encodeURIComponent("bob@example.org"))
          .replace("{jid}", encodeURIComponent(user))
          .replace("{id}", "1");
        for (const [label, token] of [
          ["revoked", revoked],
          ["expired", expired],
        ] as const) {
          const res = await h.get(concrete, token, {
            method,
            ...(method === "GET" || method === "DELETE"
              ? {}
              : { body: "{}", headers: { "content-type": "application/json" } }),
          });
          expect(res.status, `${method} ${path} with a ${label} token`).toBe(401);
          await expectContract(res, method, concrete);
        }
      }
    });

    it("gives admin scope to JIDs in ADMIN_JIDS", async () => {
      const issued = await loginOk(admin, "console");
      expect(issued.scope).toBe("admin");
      const listed = await expectContract<{ tokens: { scope: string }[] }>(
        await list(issued.token),
        "GET",
        "/v1/tokens",
      );
      expect(listed.tokens.map((t) => t.scope)).toEqual(["admin"]);
    });

    it("takes admin rights from tokens issued before the JID left ADMIN_JIDS", async () => {
      const issued = await loginOk(admin, "console");
      const admins = [...h.config.adminJids];
      // As a restart with the JID taken out of ADMIN_JIDS would configure the app.
      h.config.adminJids.splice(0);
      try {
        const res = await h.get("/v1/admin/calls", issued.token);
        expect(res.status).toBe(403);
        expect(await expectContract(res, "GET", "/v1/admin/calls")).toMatchObject({
          code: "forbidden",
        });
        const listed = await expectContract<{ tokens: { scope: string }[] }>(
          await list(issued.token),
          "GET",
          "/v1/tokens",
        );
        expect(new Set(listed.tokens.map((t) => t.scope))).toEqual(new Set(["account"]));
      } finally {
        h.config.adminJids.push(...admins);
      }
      expect((await h.get("/v1/admin/calls", issued.token)).status).toBe(200);
    });

    it("refuses a wrong password and an unknown account alike, and equally slowly", async () => {
      const alice = await createUser(ejabberd, "alice");
      const attempt = async (jid: string) => {
        const started = performance.now();
        const res = await login(h.app, { jid, password: "not-the-password" });
        return { res, ms: performance.now() - started };
      };
      const [wrong, unknown] = await Promise.all([
        attempt(alice.jid),
        attempt(`nobody-${Date.now()}@${ejabberd.domain}`),
      ]);
      for (const { res, ms } of [wrong, unknown]) {
        expect(res.status).toBe(401);
        expect(res.headers.get("content-type")).toBe("application/problem+json");
        expect(await expectContract(res, "POST", "/v1/tokens")).toEqual(invalidCredentials);
        // ejabberd refuses an unknown user in ~3 ms and a wrong password in ~450 ms.
        expect(ms).toBeGreaterThanOrEqual(990);
      }
    });

    it("refuses JIDs of other domains without asking any XMPP server", async () => {
      const offline = createApp({
        store: h.store,
        config: loadConfig({
          LOG_LEVEL: "silent",
          XMPP_SERVICE: "xmpp://127.0.0.1:1",
          XMPP_DOMAIN: ejabberd.domain,
        }),
        logger: createLogger("silent"),
        readiness: { check: async () => ({}) },
      });
      const foreign = await login(offline, { jid: "alice@elsewhere.example", password: "pw" });
      expect(foreign.status).toBe(401);
      expect(await expectContract(foreign, "POST", "/v1/tokens")).toEqual(invalidCredentials);
    });

    it("answers 503 when ejabberd is unreachable, and does not count that as a failure", async () => {
      const offline = createApp({
        store: h.store,
        config: loadConfig({
          LOG_LEVEL: "silent",
          XMPP_SERVICE: "xmpp://127.0.0.1:1",
          XMPP_DOMAIN: ejabberd.domain,
        }),
        logger: createLogger("silent"),
        readiness: { check: async () => ({}) },
      });
      const address = freshAddress();
      for (let i = 0; i < 6; i++) {
        const res = await login(
          offline,
          { jid: `alice@${ejabberd.domain}`, password: "pw" },
          address,
        );
        expect(res.status).toBe(503);
        expect(await expectContract(res, "POST", "/v1/tokens")).toEqual(
          problemBody(
            "service_unavailable",
            503,
            "Service unavailable",
            "the XMPP server cannot be reached; try again later",
          ),
        );
      }
    });
  });

  describe("rate limiting of failed logins", () => {
    it("refuses the 6th attempt for a JID within 15 minutes with 429 and Retry-After, even with the right password", async () => {
      const alice = await createUser(ejabberd, "alice");
      const failures = await Promise.all(
        Array.from({ length: 5 }, () => login(h.app, { jid: alice.jid, password: "guess" })),
      );
      for (const res of failures) {
        expect(res.status).toBe(401);
        await expectContract(res, "POST", "/v1/tokens");
      }

      now = new Date(now.getTime() + 60_000);
      const sixth = await login(h.app, { jid: alice.jid, password: alice.password });
      expect(sixth.status).toBe(429);
      expect(sixth.headers.get("retry-after")).toBe("840");
      expect(await expectContract(sixth, "POST", "/v1/tokens")).toEqual(
        problemBody(
          "too_many_attempts",
          429,
          "Too many attempts",
          "too many failed logins; try again later",
        ),
      );

      const bob = await createUser(ejabberd, "bob");
      await loginOk(bob);

      now = new Date(now.getTime() + 14 * 60_000);
      await loginOk(alice);
    });

    it("counts every spelling of a JID that ejabberd takes for it as that JID", async () => {
      const alice = await createUser(ejabberd, "alice");
      const [local, domain] = alice.jid.split("@") as [string, string];
      // Each a different string, each alice to ejabberd: none may open a fresh allowance.
      const spellings = Array.from(
        { length: 5 },
        (_, i) => `${local.slice(0, i + 1)}\u00AD${local.slice(i + 1)}@${domain.toUpperCase()}`,
      );
      for (const jid of spellings) {
        expect((await login(h.app, { jid, password: "guess" })).status).toBe(401);
      }
      const sixth = await login(h.app, { jid: `\uFEFF${alice.jid}`, password: alice.password });
      expect(sixth.status).toBe(429);
    });

    it("refuses a client address after 20 failures, whatever the JID, and limits IPv6 per /64", async () => {
      const alice = await createUser(ejabberd, "alice");
      const failures = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          login(
            h.app,
            { jid: `nobody-${i}-${Date.now()}@${ejabberd.domain}`, password: "guess" },
            `2001:db8:0:1::${i + 1}`,
            // Not believed without TRUST_PROXY: anyone can write it.
            { "x-forwarded-for": `203.0.113.${i + 1}` },
          ),
        ),
      );
      for (const res of failures) {
        expect(res.status).toBe(401);
        await expectContract(res, "POST", "/v1/tokens");
      }

      const blocked = await login(
        h.app,
        { jid: alice.jid, password: alice.password },
        "2001:db8:0:1:ffff::1",
      );
      expect(blocked.status).toBe(429);
      expect(blocked.headers.get("retry-after")).toBe("900");
      expect((await expectContract<Problem>(blocked, "POST", "/v1/tokens")).code).toBe(
        "too_many_attempts",
      );

      await loginOk(alice, "phone", "2001:db8:0:2::1");
    });

    it("behind trusted proxies (TRUST_PROXY) counts each client, not the balancer, and only trusted hops", async () => {
      const balancer = "10.0.0.1";
      const behind = createApp({
        store: h.store,
        config: loadConfig({
          LOG_LEVEL: "silent",
          XMPP_SERVICE: ejabberd.service,
          XMPP_DOMAIN: ejabberd.domain,
          TRUST_PROXY: "10.0.0.0/8",
        }),
        logger: createLogger("silent"),
        readiness: { check: async () => ({}) },
      });
      const alice = await createUser(ejabberd, "alice");
      // One client fails 20 times through the balancer, naming another address itself first
      // (a client may write X-Forwarded-For; the balancer appends the address it saw).
      const failures = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          login(
            behind,
            { jid: `nobody-${i}-${Date.now()}@${ejabberd.domain}`, password: "guess" },
            balancer,
            { "x-forwarded-for": `203.0.113.${i + 1}, 198.51.100.250` },
          ),
        ),
      );
      expect(failures.map((res) => res.status)).toEqual(Array(20).fill(401));
      const blocked = await login(behind, { jid: alice.jid, password: alice.password }, balancer, {
        "x-forwarded-for": "198.51.100.250",
      });
      expect(blocked.status).toBe(429);
      // Another client behind the same balancer is not locked out.
      const other = await login(behind, { jid: alice.jid, password: alice.password }, balancer, {
        "x-forwarded-for": "198.51.100.251",
      });
      expect(other.status).toBe(201);
    });

    it("does not count successful logins", async () => {
      const alice = await createUser(ejabberd, "alice");
      const address = freshAddress();
      for (let i = 0; i < 6; i++) await loginOk(alice, `device ${i}`, address);
    });
  });

  describe("validation", () => {
    const cases: [string, unknown, string][] = [
      ["missing jid", { password: "pw" }, "jid: required"],
      [
        "a full JID",
        { jid: "alice@example.test/phone", password: "pw" },
        "jid: expected a bare JID like alice@example.org",
      ],
      [
        "no domain",
        { jid: "alice", password: "pw" },
        "jid: expected a bare JID like alice@example.org",
      ],
      [
        "an empty password",
        { jid: "alice@example.test", password: "" },
        "password: must not be empty",
      ],
      [
        "a password over 1,024 characters",
        { jid: "alice@example.test", password: "p".repeat(1025) },
        "password: Too big: expected string to have <=1024 characters",
      ],
      [
        "a local part of invisible characters only",
        { jid: "\u00AD\u200B@example.test", password: "pw" },
        "jid: expected a bare JID like alice@example.org",
      ],
      [
        "a label over 100 characters",
        { jid: "alice@example.test", password: "pw", label: "x".repeat(101) },
        "label: Too big: expected string to have <=100 characters",
      ],
      ["an array", [], "body: Invalid input: expected object, received array"],
      ["malformed JSON", "{not json", "body: malformed JSON"],
    ];
    it.each(cases)(
      "refuses %s with 400 validation_failed naming the field",
      async (_, body, detail) => {
        const res = await login(h.app, body);
        expect(res.status).toBe(400);
        expect(await expectContract(res, "POST", "/v1/tokens")).toEqual(
          problemBody("validation_failed", 400, "Invalid request", detail),
        );
      },
    );

    it("refuses a body that is not JSON", async () => {
      const res = await h.app.request("/v1/tokens", {
        method: "POST",
        headers: { "content-type": "text/plain" },
        body: "jid=alice@example.test",
      });
      expect(res.status).toBe(400);
      expect(await expectContract(res, "POST", "/v1/tokens")).toEqual(
        problemBody("validation_failed", 400, "Invalid request", "body: expected application/json"),
      );
    });
  });

  describe("listing and revoking", () => {
    it("lists only the caller's live tokens, newest first, never a secret or hash", async () => {
      const alice = await createUser(ejabberd, "alice");
      const bob = await createUser(ejabberd, "bob");
      const phone = await loginOk(alice, "phone");
      now = new Date(now.getTime() + 1000);
      const laptop = await loginOk(alice, "laptop");
      const bobs = await loginOk(bob, "bob's");
      const revoked = await h.token(alice.jid);
      await h.store.db
        .update(tokens)
        .set({ revokedAt: now })
        .where(eq(tokens.hash, hashToken(revoked)));
      const expired = await h.token(alice.jid);
      await h.store.db
        .update(tokens)
        .set({ expiresAt: new Date(now.getTime() - 1000) })
        .where(eq(tokens.hash, hashToken(expired)));

      const res = await list(phone.token);
      const text = await res.clone().text();
      const body = await expectContract<Listed>(res, "GET", "/v1/tokens");
      expect(body.tokens.map((t) => [t.id, t.label, t.current])).toEqual([
        [laptop.id, "laptop", false],
        [phone.id, "phone", true],
      ]);
      for (const secret of [
        phone.token,
        laptop.token,
        hashToken(phone.token),
        hashToken(laptop.token),
        bobs.id,
      ]) {
        expect(text).not.toContain(secret);
      }
    });

    it("revokes the caller's own token: 204, and that token is refused on its next request", async () => {
      const alice = await createUser(ejabberd, "alice");
      const phone = await loginOk(alice, "phone");
      const laptop = await loginOk(alice, "laptop");

      const res = await h.get(`/v1/tokens/${phone.id}`, laptop.token, { method: "DELETE" });
      expect(res.status).toBe(204);
      await expectContract(res, "DELETE", `/v1/tokens/${phone.id}`);

      const refused = await list(phone.token);
      expect(refused.status).toBe(401);
      await expectContract(refused, "GET", "/v1/tokens");
      const listed = await expectContract<Listed>(await list(laptop.token), "GET", "/v1/tokens");
      expect(listed.tokens.map((t) => t.id)).toEqual([laptop.id]);

      const again = await h.get(`/v1/tokens/${phone.id}`, laptop.token, { method: "DELETE" });
      expect(again.status).toBe(404);
      await expectContract(again, "DELETE", `/v1/tokens/${phone.id}`);

      const self = await h.get(`/v1/tokens/${laptop.id}`, laptop.token, { method: "DELETE" });
      expect(self.status).toBe(204);
      await expectContract(self, "DELETE", `/v1/tokens/${laptop.id}`);
      expect((await list(laptop.token)).status).toBe(401);
    });

    it("answers 404 for another account's token id exactly as for an unknown one, and leaves it alone", async () => {
      const aliceToken = await h.token(`alice-${Date.now()}@${ejabberd.domain}`);
      const bob = await createUser(ejabberd, "bob");
      const bobs = await loginOk(bob);

      const other = await h.get(`/v1/tokens/${bobs.id}`, aliceToken, {
        method: "DELETE",
        headers: { "x-request-id": "r1" },
      });
      const unknown = await h.get("/v1/tokens/tok_doesnotexist", aliceToken, {
        method: "DELETE",
        headers: { "x-request-id": "r1" },
      });
      expect(other.status).toBe(404);
      expect(unknown.status).toBe(404);
      const otherBody = await expectContract<Problem>(other, "DELETE", `/v1/tokens/${bobs.id}`);
      const unknownBody = await expectContract<Problem>(
        unknown,
        "DELETE",
        "/v1/tokens/tok_doesnotexist",
      );
      expect(otherBody).toEqual({ ...unknownBody, detail: `no token ${bobs.id}` });
      expect(otherBody.code).toBe("not_found");

      const stillValid = await list(bobs.token);
      expect(stillValid.status).toBe(200);
      await expectContract(stillValid, "GET", "/v1/tokens");
    });
  });

  describe("authentication of token routes", () => {
    const unauthorized = (detail: string) =>
      problemBody("unauthorized", 401, "Unauthorized", detail);
    const routes = [
      ["GET", "/v1/tokens"],
      ["DELETE", "/v1/tokens/tok_whatever"],
    ] as const;

    it.each(routes)(
      "%s %s refuses a missing or malformed Authorization header",
      async (method, path) => {
        for (const authorization of [
          undefined,
          "Token abc",
          "Bearer",
          "Bearer a b",
          "Basic YWxpY2U6cHc=",
        ]) {
          const res = await h.app.request(path, {
            method,
            headers: authorization ? { authorization } : {},
          });
          expect(res.status).toBe(401);
          expect(res.headers.get("www-authenticate")).toBe('Bearer realm="syncside"');
          expect(await expectContract(res, method, path)).toEqual(
            unauthorized("a bearer token is required"),
          );
        }
      },
    );

    it.each(routes)(
      "%s %s refuses unknown, expired and revoked tokens alike",
      async (method, path) => {
        const jid = `carol-${Date.now()}@${ejabberd.domain}`;
        const expired = await h.token(jid);
        await h.store.db
          .update(tokens)
          .set({ expiresAt: new Date(now.getTime() - 1) })
          .where(eq(tokens.hash, hashToken(expired)));
        const revoked = await h.token(jid);
        await h.store.db
          .update(tokens)
          .set({ revokedAt: now })
          .where(eq(tokens.hash, hashToken(revoked)));

        for (const token of [`sst_${"A".repeat(43)}`, expired, revoked]) {
          const res = await h.get(path, token, { method });
          expect(res.status).toBe(401);
          expect(res.headers.get("www-authenticate")).toBe(
            'Bearer realm="syncside", error="invalid_token"',
          );
          expect(await expectContract(res, method, path)).toEqual(
            unauthorized("the token is unknown, expired or revoked"),
          );
        }
      },
    );

    it("slides a token's expiry forward when it is used, at most once a minute", async () => {
      const token = await h.token(`dave-${Date.now()}@${ejabberd.domain}`);
      const expiry = async () => {
        const res = await list(token);
        expect(res.status).toBe(200);
        const body = await expectContract<Listed>(res, "GET", "/v1/tokens");
        return body.tokens[0]?.expires_at;
      };
      const first = now.getTime();
      expect(await expiry()).toBe(new Date(first + TTL).toISOString());

      now = new Date(first + 30_000);
      expect(await expiry()).toBe(new Date(first + TTL).toISOString());

      now = new Date(first + 2 * DAY);
      expect(await expiry()).toBe(new Date(first + 2 * DAY + TTL).toISOString());

      now = new Date(first + 2 * DAY + TTL + 1);
      const lapsed = await list(token);
      expect(lapsed.status).toBe(401);
      await expectContract(lapsed, "GET", "/v1/tokens");
    });
  });
});
