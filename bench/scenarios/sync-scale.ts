import { createApp } from "../../src/api/app.js";
import { ensureAccount } from "../../src/api/auth.js";
import type { App } from "../../src/api/context.js";
import { decodePosition } from "../../src/api/position.js";
import { loadConfig } from "../../src/config.js";
import { localTo } from "../../src/ingest/leader.js";
import type { ParsedCopy } from "../../src/ingest/parse.js";
import { createLogger } from "../../src/logger.js";
import type { Store } from "../../src/store/db.js";
import { appendBatch } from "../../src/store/events.js";
import { loadStoreMeta } from "../../src/store/meta.js";
import { readSync } from "../../src/store/sync.js";
import { msg } from "../../test/helpers/copies.js";
import { type Figure, ratioOf, type Scenario, targetOf } from "../scenario.js";
import { phoneToken } from "../sidecar.js";
import { percentile } from "../stats.js";

const DOMAIN = "bench.test";
/** Peers on another server: each message is one event, in exactly one account's stream. */
const PEERS = "contacts.example";
const CONVERSATIONS = 100;
/** Accounts written per transaction: 50 × 100 copies, the account rows locked once per batch. */
const ACCOUNTS_PER_BATCH = 50;
/** Batches in flight: the second core builds the next batch while PostgreSQL commits one. */
const INFLIGHT = 2;
const CHANGED = 20;
const write = { isLocal: localTo(new Set([DOMAIN])), callRingTimeoutMs: 60_000 };

const accountJid = (i: number) => `s${i.toString().padStart(6, "0")}@${DOMAIN}`;
const peerJid = (k: number) => `p${k.toString().padStart(3, "0")}@${PEERS}`;

/** One message in each of the account's conversations, half received, half sent. */
function historyOf(account: number): ParsedCopy[] {
  const me = accountJid(account);
  return Array.from({ length: CONVERSATIONS }, (_, k) =>
    k % 2 === 0
      ? msg(peerJid(k), me, `h${account}-${k}`, "see you at the station at nine")
      : msg(me, peerJid(k), `h${account}-${k}`, "on my way, running ten minutes late"),
  );
}

/**
 * Fills a store through appendBatch, the ingest write path, grouped by account so each
 * transaction locks few account rows; returns events written per second.
 */
async function generate(
  store: Store,
  accounts: number,
  progress: (message: string) => void,
  signal: AbortSignal,
): Promise<{ events: number; ms: number }> {
  const started = performance.now();
  let events = 0;
  let next = 0;
  let lastReport = started;
  const worker = async () => {
    while (next < accounts && !signal.aborted) {
      const first = next;
      next = Math.min(accounts, next + ACCOUNTS_PER_BATCH);
      const copies: ParsedCopy[] = [];
      for (let a = first; a < next; a++) copies.push(...historyOf(a));
      const result = await appendBatch(store.db, { copies }, write);
      events += result.written;
      if (performance.now() - lastReport > 15_000) {
        lastReport = performance.now();
        const rate = (events / (lastReport - started)) * 1000;
        progress(`  ${events} events, ${Math.round(rate)}/s`);
      }
    }
  };
  await Promise.all(Array.from({ length: INFLIGHT }, worker));
  if (signal.aborted) throw new Error("interrupted while generating the store");
  return { events, ms: performance.now() - started };
}

interface Subject {
  label: string;
  store: Store;
  app: App;
  token: string;
  accountId: number;
  since: { seq: number; base: number };
  query: string;
}

/**
 * The account in the middle of the store: its phone synced after the history was written, then
 * 20 of its conversations changed (two new messages each, one received and one sent).
 */
async function subjectOf(label: string, store: Store, accounts: number): Promise<Subject> {
  const app = createApp({
    store,
    config: loadConfig({ LOG_LEVEL: "silent" }),
    logger: createLogger("silent"),
    readiness: { check: async () => ({ database: "ok" }) },
  });
  const jid = accountJid(Math.floor(accounts / 2));
  const token = await phoneToken(store.db, jid);
  const accountId = await ensureAccount(store.db, jid);
  const first = await app.request("/v1/sync?limit=1&messages=1", {
    headers: { authorization: `Bearer ${token}` },
  });
  if (!first.ok) throw new Error(`first sync answered ${first.status}`);
  const position = ((await first.json()) as { position: string }).position;
  const meta = await loadStoreMeta(store);
  const decoded = decodePosition(meta.epoch, meta.positionKey, position);
  if (!decoded.ok) throw new Error("the first sync's position does not decode");

  const changes: ParsedCopy[] = [];
  for (let k = 0; k < CHANGED; k++) {
    const peer = peerJid(k * 5);
    changes.push(msg(peer, jid, `c${k}-in`, "are we still on for tonight?"));
    changes.push(msg(jid, peer, `c${k}-out`, "yes, 8 pm at the usual place"));
  }
  await appendBatch(store.db, { copies: changes }, write);
  return {
    label,
    store,
    app,
    token,
    accountId,
    since: decoded.position,
    query: `/v1/sync?since=${encodeURIComponent(position)}&limit=50&messages=20`,
  };
}

/**
 * One GET /v1/sync through the whole app (auth, read, JSON), timed as server time: from the
 * request handed to the app to its answer, whose body is complete by then. The request is built
 * before and the answer read after, as a client's side; it is checked.
 */
async function timeRequest(s: Subject): Promise<number> {
  const request = new Request(`http://bench${s.query}`, {
    headers: { authorization: `Bearer ${s.token}` },
  });
  const started = performance.now();
  const res = await s.app.fetch(request);
  const ms = performance.now() - started;
  const body = (await res.json()) as { conversations: { messages: unknown[] }[] };
  if (res.status !== 200 || body.conversations.length !== CHANGED) {
    throw new Error(`${s.label}: sync answered ${res.status} with ${body.conversations?.length}`);
  }
  return ms;
}

/** readSync alone: the store's share of a request (one repeatable-read transaction). */
async function timeRead(s: Subject): Promise<number> {
  const started = performance.now();
  const snapshot = await readSync(s.store.db, {
    accountId: s.accountId,
    since: s.since,
    limit: 50,
    messages: 20,
    now: new Date(),
  });
  const ms = performance.now() - started;
  if (!snapshot.ok || snapshot.conversations.length !== CHANGED) {
    throw new Error(`${s.label}: readSync returned the wrong conversations`);
  }
  return ms;
}

/**
 * The baseline: one bare round trip to PostgreSQL (`select 1`) from the same process. A request
 * makes two (the token, then the sync), so on a machine whose wake-ups are slow their tail shows
 * in the request's p99 whatever the statement costs.
 */
async function timeRoundTrip(s: Subject): Promise<number> {
  const started = performance.now();
  await s.store.ping();
  return performance.now() - started;
}

function latencyFigures(prefix: string, samples: number[], note: string): Figure[] {
  const sorted = [...samples].sort((a, b) => a - b);
  return [
    { name: `${prefix}.p50`, value: percentile(sorted, 50), unit: "ms", note },
    { name: `${prefix}.p99`, value: percentile(sorted, 99), unit: "ms" },
  ];
}

export const syncScale: Scenario = {
  name: "sync-scale",
  description: "GET /v1/sync with 20 changed conversations: 1M-event store vs 100k",
  async run(ctx) {
    const largeAccounts = ctx.sized(10_000, 200);
    const smallAccounts = Math.min(largeAccounts, 1000);
    const requests = Math.max(200, ctx.sized(1000, 200));

    const small = await ctx.postgres();
    ctx.progress(`small store: ${smallAccounts} accounts × ${CONVERSATIONS} conversations`);
    const smallFill = await generate(small.store, smallAccounts, ctx.progress, ctx.signal);
    const large = await ctx.postgres();
    ctx.progress(
      `large store: ${largeAccounts} accounts × ${CONVERSATIONS} conversations (${Math.round((((largeAccounts * CONVERSATIONS) / smallFill.events) * smallFill.ms) / 60_000)} min at the small store's rate)`,
    );
    const largeFill = await generate(large.store, largeAccounts, ctx.progress, ctx.signal);
    // Statistics and visibility maps as autovacuum leaves them after a bulk load this size, done
    // now rather than by autovacuum in the middle of the measurement, on one of the two cores.
    for (const db of [small, large]) await db.store.db.execute("vacuum analyze");

    const subjects = [
      await subjectOf("small", small.store, smallAccounts),
      await subjectOf("large", large.store, largeAccounts),
    ];
    // Warm-up: JIT, prepared statements, the account's pages in PostgreSQL's cache.
    for (let i = 0; i < 50; i++) for (const s of subjects) await timeRequest(s);

    ctx.progress(`${requests} syncs on each store, alternating`);
    const times = {
      small: { http: [] as number[], read: [] as number[], roundTrip: [] as number[] },
      large: { http: [] as number[], read: [] as number[], roundTrip: [] as number[] },
    };
    for (let i = 0; i < requests && !ctx.signal.aborted; i++) {
      for (const s of i % 2 === 0 ? subjects : [...subjects].reverse()) {
        const t = times[s.label as "small" | "large"];
        t.http.push(await timeRequest(s));
        t.read.push(await timeRead(s));
        t.roundTrip.push(await timeRoundTrip(s));
      }
    }

    const figures: Figure[] = [
      ...latencyFigures(
        "large.request",
        times.large.http,
        `GET /v1/sync server time in-process (app.fetch, real token), ${largeFill.events} events`,
      ),
      ...latencyFigures("large.read", times.large.read, "readSync alone, the store query"),
      ...latencyFigures("small.request", times.small.http, `${smallFill.events} events`),
      ...latencyFigures("small.read", times.small.read, "readSync alone"),
      ...latencyFigures(
        "baseline.round_trip",
        [...times.large.roundTrip, ...times.small.roundTrip],
        "one bare round trip to PostgreSQL (select 1) from the same process, between the requests",
      ),
      {
        name: "generate.events_per_s",
        value: ((smallFill.events + largeFill.events) / (smallFill.ms + largeFill.ms)) * 1000,
        unit: "events/s",
        note: `appendBatch, ${ACCOUNTS_PER_BATCH} accounts × ${CONVERSATIONS} copies per transaction, ${INFLIGHT} in flight`,
      },
    ];
    return {
      params: {
        large_events: largeFill.events,
        small_events: smallFill.events,
        large_accounts: largeAccounts,
        small_accounts: smallAccounts,
        conversations_per_account: CONVERSATIONS,
        changed_conversations: CHANGED,
        requests,
      },
      figures,
      ratios: [
        ratioOf(figures, "request p50 large/small", "large.request.p50", "small.request.p50"),
        ratioOf(figures, "request p99 large/small", "large.request.p99", "small.request.p99"),
        ratioOf(figures, "read p50 large/small", "large.read.p50", "small.read.p50"),
        ratioOf(figures, "read p99 large/small", "large.read.p99", "small.read.p99"),
        ratioOf(
          figures,
          "request p99 / round trip p99",
          "large.request.p99",
          "baseline.round_trip.p99",
        ),
      ],
      targets: [
        targetOf(figures, "large.request.p99", "<=", 5),
        {
          figure: "request p50 large/small",
          op: "<=",
          value: 1.3,
          met: ratioOf(figures, "", "large.request.p50", "small.request.p50").value <= 1.3,
        },
      ],
      notes: [
        `stores generated through appendBatch (the ingest write path) on PostgreSQL: each account has ${CONVERSATIONS} conversations with one message each, peers on a remote server so every message is one event`,
        `the synced account (the middle one) took its position after the history, then ${CHANGED} of its conversations got two messages each (one in, one out): the sync answers those ${CHANGED} with their 40 messages`,
        "request: server time of GET /v1/sync?since=P&limit=50&messages=20 with a real bearer token — app.fetch from the request to the finished answer: auth, store meta, readSync, JSON — no socket, the client's building and parsing not counted; read: readSync alone",
        "the two stores are measured alternately, request by request, so load on the machine bends both alike",
        "baseline: a request waits on two round trips to PostgreSQL (the token lookup, the sync statement); on two shared cores a bare round trip's p99 is many times its p50 (a process woken on an idle core), and that tail, not the statement, sets most of the request's p99",
        `generation: ${Math.round(largeFill.ms / 1000)} s for the large store, ${Math.round(smallFill.ms / 1000)} s for the small`,
      ],
    };
  },
};
