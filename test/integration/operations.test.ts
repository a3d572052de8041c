import xml from "@xmpp/xml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ParsedCopy } from "../../src/ingest/parse.js";
import { createLogger } from "../../src/logger.js";
import { appendBatch, type WriteOptions } from "../../src/store/events.js";
import { expectContract } from "../helpers/contract.js";
import { msg, wireCopy } from "../helpers/copies.js";
import { holdAccountRow } from "../helpers/database.js";
import { createHarness, type Harness, harnessForTest } from "../helpers/harness.js";
import { pipelineFor } from "../helpers/ingest.js";
import { waitFor } from "../helpers/wait.js";

type LogLine = Record<string, unknown> & { msg: string };

describe("operations: request ids in logs, access lines, /metrics", () => {
  let h: Harness;
  let options: WriteOptions;
  const lines: LogLine[] = [];
  let n = 0;
  beforeAll(async () => {
    // Every line the app writes, parsed, in order.
    const destination = { write: (line: string) => void lines.push(JSON.parse(line)) };
    h = await createHarness({ deps: { logger: createLogger("debug", destination) } });
    options = {
      isLocal: (jid) => jid.endsWith("@example.org"),
      callRingTimeoutMs: h.config.callRingTimeoutMs,
    };
  });
  afterAll(() => h.close());

  function people() {
    n++;
    return { alice: `ops-alice${n}@example.org`, bob: `ops-bob${n}@example.org` };
  }
  const write = (...copies: ParsedCopy[]) => appendBatch(h.store.db, { copies }, options);

  /** The lines logged while `run` went on. */
  async function logged<T>(run: () => Promise<T>): Promise<{ result: T; lines: LogLine[] }> {
    const from = lines.length;
    const result = await run();
    return { result, lines: lines.slice(from) };
  }

  async function metrics(): Promise<string> {
    const res = await h.app.request("/metrics");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    return expectContract<string>(res, "GET", "/metrics");
  }

  /** The value of one sample, found by its name and a subset of its labels. */
  function sample(text: string, name: string, labels: Record<string, string> = {}): number | null {
    const line = text
      .split("\n")
      .find(
        (l) =>
          (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) &&
          Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)),
      );
    return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : null;
  }

  describe("request ids", () => {
    it("carries the caller's x-request-id on every log line of the request, and one access line", async () => {
      const { alice, bob } = people();
      await write(msg(bob, alice, "m1", "hi"));
      const admin = await h.token("ops-root@example.org", "admin");

      const { result: res, lines: during } = await logged(() =>
        h.get(`/v1/admin/accounts/${alice}`, admin, {
          method: "DELETE",
          headers: { "x-request-id": "abc" },
        }),
      );
      expect(res.status).toBe(204);
      expect(res.headers.get("x-request-id")).toBe("abc");
      expect(during.map((l) => [l.requestId, l.msg])).toEqual([
        ["abc", "account mirror erased"],
        ["abc", "request"],
      ]);
      expect(during.at(-1)).toMatchObject({
        level: 30,
        requestId: "abc",
        method: "DELETE",
        route: "/v1/admin/accounts/{jid}",
        status: 204,
        ms: expect.any(Number),
      });
      // The route template, not the path: the JID is in neither the access line nor any other.
      expect(JSON.stringify(during.at(-1))).not.toContain(alice);
    });

    it("puts the request id in the header and the problem of a failed request, and logs it", async () => {
      const { result: res, lines: during } = await logged(async () =>
        h.app.request("/v1/nothing-here", { headers: { "x-request-id": "req-404" } }),
      );
      expect(res.status).toBe(404);
      expect(res.headers.get("x-request-id")).toBe("req-404");
      expect(await res.json()).toMatchObject({ code: "not_found", request_id: "req-404" });
      expect(during).toEqual([
        expect.objectContaining({
          requestId: "req-404",
          msg: "request",
          method: "GET",
          route: "unmatched",
          status: 404,
        }),
      ]);
    });

    it("makes up an id when the caller sends none, the same in header, problem and logs", async () => {
      const { result: res, lines: during } = await logged(async () => h.app.request("/v1/sync"));
      expect(res.status).toBe(401);
      const id = res.headers.get("x-request-id");
      expect(id).toMatch(/^[\w-]{8,}$/);
      expect(await expectContract(res, "GET", "/v1/sync")).toMatchObject({ request_id: id });
      expect(during.map((l) => l.requestId)).toEqual([id]);
    });

    it("logs a long-poll's own lines with the request id too", async () => {
      const { alice, bob } = people();
      await write(msg(bob, alice, "m1", "hi"));
      const token = await h.token(alice);
      const first = (await (await h.get("/v1/sync", token)).json()) as { position: string };
      const { lines: during } = await logged(async () => {
        const poll = h.get(`/v1/sync?since=${first.position}&wait=5`, token, {
          headers: { "x-request-id": "poll-1" },
        });
        await waitFor(async () => sample(await metrics(), "syncside_sync_long_polls_open") === 1, {
          what: "the long-poll to wait",
        });
        await write(msg(bob, alice, "m2", "wake up"));
        return poll;
      });
      const mine = during.filter((l) => l.requestId === "poll-1");
      expect(mine.map((l) => l.msg)).toEqual(["sync answered", "request"]);
    });
  });

  describe("GET /metrics", () => {
    it("counts requests by method, route template and status, never by raw path", async () => {
      const { alice, bob } = people();
      const token = await h.token(alice);
      const res = await h.get(`/v1/conversations/${bob}`, token);
      expect(res.status).toBe(404);
      await h.app.request("/v1/nothing-here");

      const text = await metrics();
      expect(
        sample(text, "syncside_http_request_duration_seconds_count", {
          method: "GET",
          route: "/v1/conversations/{peer}",
          status: "404",
        }),
      ).toBe(1);
      expect(
        sample(text, "syncside_http_request_duration_seconds_count", {
          route: "unmatched",
          status: "404",
        }),
      ).toBeGreaterThanOrEqual(1);
      expect(text).not.toContain(bob);
      expect(text).not.toContain("nothing-here");
    });

    it("reports ingest, open long-polls and database connections", async () => {
      const { alice, bob } = people();
      await write(msg(bob, alice, "m1", "hi"));
      const token = await h.token(alice);
      const first = (await (await h.get("/v1/sync", token)).json()) as { position: string };

      const before = await metrics();
      expect(sample(before, "syncside_ingest_leader")).toBe(0);
      expect(sample(before, "syncside_ingest_connected")).toBe(0);
      expect(sample(before, "syncside_sync_long_polls_open")).toBe(0);
      // The harness's own pool is a syncside connection on this database.
      expect(sample(before, "syncside_database_connections")).toBeGreaterThanOrEqual(1);
      // This process's pool: a transaction held open is one busy connection until it ends.
      const pool = (text: string) => [
        sample(text, "syncside_database_pool_connections", { state: "busy" }),
        sample(text, "syncside_database_pool_max"),
      ];
      const size = (await h.store.databaseUse())?.max;
      expect(size).toBeGreaterThan(1);
      expect(pool(before)).toEqual([0, size]);
      const held = await holdAccountRow(h.store.db, alice);
      try {
        expect(pool(await metrics())).toEqual([1, size]);
      } finally {
        await held.release();
      }
      // With every pooled connection busy, a scrape still answers and shows it.
      const all = await Promise.all(
        Array.from({ length: size ?? 0 }, (_, i) =>
          holdAccountRow(h.store.db, `held-${i}@example.org`),
        ),
      );
      try {
        expect(pool(await metrics())).toEqual([size, size]);
      } finally {
        await Promise.all(all.map((hold) => hold.release()));
      }
      expect(pool(await metrics())).toEqual([0, size]);
      const idle = sample(before, "syncside_database_pool_connections", { state: "idle" });
      expect(idle).not.toBeNull();
      expect(idle).toBeLessThanOrEqual(size ?? 0);

      const poll = h.get(`/v1/sync?since=${first.position}&wait=10`, token);
      await waitFor(async () => sample(await metrics(), "syncside_sync_long_polls_open") === 1, {
        what: "the long-poll to be counted",
      });
      await write(msg(bob, alice, "m2", "wake up"));
      const answer = await poll;
      expect(answer.status).toBe(200);
      expect(((await answer.json()) as { conversations: unknown[] }).conversations).toHaveLength(1);
      expect(sample(await metrics(), "syncside_sync_long_polls_open")).toBe(0);

      h.ingest.role = "leader";
      h.ingest.connected = true;
      h.ingest.reject("malformed");
      try {
        const text = await metrics();
        expect(sample(text, "syncside_ingest_leader")).toBe(1);
        expect(sample(text, "syncside_ingest_connected")).toBe(1);
        expect(sample(text, "syncside_ingest_rejected_total", { reason: "malformed" })).toBe(1);
      } finally {
        h.ingest.role = "disabled";
        h.ingest.connected = false;
      }
    });

    it("reports what the ingest pipeline committed, refused and still waits for", async () => {
      const { alice, bob } = people();
      const pipeline = pipelineFor(h.store, { stats: h.ingest, lanes: 1, lingerMs: 1 });
      const before = await metrics();
      const count = (text: string, name: string, labels: Record<string, string>) =>
        sample(text, name, labels) ?? 0;
      const sentAt = (ago: number) => new Date(Date.now() - ago).toISOString();
      try {
        await pipeline.push([
          {
            copy: wireCopy({ from: alice, to: bob, id: "p1", body: "hi", stamp: sentAt(50) }),
            archiveId: null,
          },
          { copy: xml("message", { from: "example.org", id: "not-a-copy" }), archiveId: null },
        ]);
        const text = await metrics();
        expect(
          count(text, "syncside_ingest_events_total", { kind: "message" }) -
            count(before, "syncside_ingest_events_total", { kind: "message" }),
        ).toBe(2);
        expect(
          count(text, "syncside_ingest_rejected_total", { reason: "not_a_copy" }) -
            count(before, "syncside_ingest_rejected_total", { reason: "not_a_copy" }),
        ).toBe(1);
        expect(sample(text, "syncside_ingest_lag_seconds")).toBeGreaterThanOrEqual(0.05);

        // While a batch waits (here on a row lock), the lag grows with its oldest copy's age.
        const holder = await holdAccountRow(h.store.db, alice);
        const waiting = pipeline.push([
          {
            copy: wireCopy({ from: alice, to: bob, id: "p2", body: "?", stamp: sentAt(0) }),
            archiveId: null,
          },
        ]);
        await waitFor(
          async () => (sample(await metrics(), "syncside_ingest_lag_seconds") ?? 0) >= 1,
          { what: "the lag to count the waiting copy" },
        );
        await holder.release();
        await waiting;
        // Committed: the lag is that batch's again, and stops growing.
        expect(h.ingest.lagMs()).toBe(h.ingest.lastLagMs);
      } finally {
        pipeline.close();
      }
    });

    it("has no database connection gauge on embedded PGlite", async () => {
      const embedded = await harnessForTest({ driver: "pglite" });
      const res = await embedded.app.request("/metrics");
      const text = await expectContract<string>(res, "GET", "/metrics");
      expect(sample(text, "syncside_ingest_leader")).toBe(0);
      expect(sample(text, "syncside_database_connections")).toBeNull();
      expect(sample(text, "syncside_database_pool_max")).toBeNull();
    });

    it("answers 401 without METRICS_TOKEN when one is configured", async () => {
      const secret = "metrics-token-0123456789";
      const guarded = await harnessForTest({ driver: "pglite", env: { METRICS_TOKEN: secret } });
      const attempts: Record<string, string>[] = [
        {},
        { authorization: "Bearer wrong-token-0123456789" },
      ];
      for (const headers of attempts) {
        const res = await guarded.app.request("/metrics", { headers });
        expect(res.status).toBe(401);
        expect(await expectContract(res, "GET", "/metrics")).toMatchObject({
          code: "unauthorized",
        });
      }
      const res = await guarded.app.request("/metrics", {
        headers: { authorization: `Bearer ${secret}` },
      });
      expect(res.status).toBe(200);
      expect(await expectContract<string>(res, "GET", "/metrics")).toContain(
        "syncside_ingest_leader",
      );
    });
  });
});
