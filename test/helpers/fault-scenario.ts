import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Client, client, xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import { asc, eq } from "drizzle-orm";
import { openDb } from "../../src/store/db.js";
import { accounts } from "../../src/store/schema/accounts.js";
import { events } from "../../src/store/schema/events.js";
import { dropDatabase } from "./database.js";
import {
  createUser,
  type EjabberdInstance,
  ejabberdScript,
  freeInstanceBase,
  instanceAt,
  type TestUser,
} from "./ejabberd.js";
import { freePort, type PrivatePostgres, startPrivatePostgres } from "./private-postgres.js";
import { type SidecarProcess, sidecarProcess } from "./sidecar-process.js";
import { waitFor } from "./wait.js";

export interface FaultScenarioOptions {
  /** the repository root (scripts/ejabberd.sh, src/main.ts) */
  root: string;
  /** stanzas in the burst, all senders together */
  stanzas: number;
  senders?: number;
  /** the last recipient stays offline until the burst is over */
  recipients?: number;
  /** stanzas a sender writes before it asks the server for a barrier (an XEP-0199 ping) */
  chunk?: number;
  log?: (line: string) => void;
}

export interface AccountMismatch {
  jid: string;
  missing: string[];
  extra: string[];
  duplicated: string[];
  wrongKind: string[];
  seqGaps: number;
}

export interface FaultReport {
  /** stanzas the server acknowledged (a ping answered after them) */
  sent: number;
  /** distinct stanzas the recipient clients got, live or from offline storage */
  received: number;
  /** deliveries of a stanza the client already had (stream-management resends) */
  receivedAgain: number;
  bodyless: number;
  /** events in the store for the scenario's accounts: `in` on recipients, `out` on senders */
  storedIn: number;
  storedOut: number;
  missing: number;
  extra: number;
  duplicated: number;
  wrongKind: number;
  seqGaps: number;
  mismatches: AccountMismatch[];
  faults: { at: number; what: string; ms: number }[];
  ms: { setup: number; burst: number; settle: number; total: number };
}

const NS_PING = "urn:xmpp:ping";
const KIND_OF_SUFFIX: Record<string, string> = { m: "message", r: "reaction", d: "displayed" };
/** Offline storage holds 5000 per account (ejabberd.yml.tpl); beyond it the server bounces. */
const OFFLINE_LIMIT = 4500;

/** Rigs that have not cleaned up yet: a test's afterAll stops them even after a timeout. */
const running = new Set<() => Promise<void>>();

export async function cleanupFaultScenarios(): Promise<void> {
  await Promise.all([...running].map((stop) => stop().catch(() => {})));
}

function faultInstance(home: string, base: number): EjabberdInstance {
  // ejabberd's archive lives on the machine's PostgreSQL, not on the private one this
  // scenario restarts: only syncside's database is meant to go down.
  return instanceAt({ home, base, domain: "faults.test", name: "faults" });
}

/** A client that re-announces presence on every connection, or the server treats it as offline. */
async function connect(i: EjabberdInstance, user: TestUser, onStanza?: (s: Element) => void) {
  const xmpp = client({
    service: i.service,
    domain: i.domain,
    username: user.username,
    password: user.password,
    resource: "burst",
  });
  xmpp.on("error", () => {});
  if (onStanza) xmpp.on("stanza", onStanza);
  xmpp.on("online", () => void xmpp.send(xml("presence")).catch(() => {}));
  await xmpp.start();
  return xmpp;
}

async function disconnect(xmpp: Client | null | undefined): Promise<void> {
  if (!xmpp) return;
  xmpp.reconnect.stop();
  await Promise.race([xmpp.stop().catch(() => {}), new Promise((r) => setTimeout(r, 3000))]);
}

/** Stanza k of sender s: every tenth to a recipient a reaction, every tenth a marker. */
function stanzaOf(s: number, k: number, recipients: TestUser[]) {
  const r = k % recipients.length;
  const j = Math.floor(k / recipients.length);
  const to = (recipients[r] as TestUser).jid;
  const previous = `f${s}-${k - recipients.length}-m`;
  if (j % 10 === 3) {
    const id = `f${s}-${k}-r`;
    const reactions = xml(
      "reactions",
      { xmlns: "urn:xmpp:reactions:0", id: previous },
      xml("reaction", {}, "👍"),
    );
    return { id, to, r, stanza: xml("message", { to, id, type: "chat" }, reactions) };
  }
  if (j % 10 === 6) {
    const id = `f${s}-${k}-d`;
    const marker = xml("displayed", { xmlns: "urn:xmpp:chat-markers:0", id: previous });
    return { id, to, r, stanza: xml("message", { to, id, type: "chat" }, marker) };
  }
  const id = `f${s}-${k}-m`;
  return {
    id,
    to,
    r,
    stanza: xml(
      "message",
      { to, id, type: "chat" },
      xml("body", {}, `burst ${s}/${k}`),
      xml("markable", { xmlns: "urn:xmpp:chat-markers:0" }),
    ),
  };
}

/**
 * The fault scenario, at any size: a burst of one-to-one stanzas from several clients while
 * syncside is kill -9ed and restarted twice, ejabberd restarted once and PostgreSQL restarted
 * once — each a private instance, so nothing shared is disturbed. Afterwards compares the store
 * with what the recipient clients received and reports every difference.
 */
export async function runFaultScenario(o: FaultScenarioOptions): Promise<FaultReport> {
  const started = Date.now();
  const log = o.log ?? (() => {});
  const senderCount = o.senders ?? 4;
  const recipientCount = o.recipients ?? 4;
  const chunk = o.chunk ?? 50;
  const total = o.stanzas;
  if (total / recipientCount > OFFLINE_LIMIT) {
    throw new Error(
      `${Math.ceil(total / recipientCount)} stanzas for the offline recipient exceed ejabberd's offline limit; use more recipients`,
    );
  }

  const cleanups: (() => Promise<void>)[] = [];
  const cleanup = async () => {
    running.delete(cleanup);
    for (const step of cleanups.reverse()) await step().catch(() => {});
  };
  running.add(cleanup);

  let pg: PrivatePostgres | undefined;
  let sidecar: SidecarProcess | undefined;
  let failed = true;
  try {
    const work = await mkdtemp(join(tmpdir(), "syncside-faults-"));
    // ejabberd runs as its own user and must reach its home inside this directory.
    await chmod(work, 0o755);
    // Kept after a failure (or with FAULT_KEEP=1) for the logs of syncside and ejabberd.
    cleanups.push(() =>
      failed || process.env.FAULT_KEEP
        ? Promise.resolve()
        : rm(work, { recursive: true, force: true }),
    );

    const base = process.env.FAULT_EJABBERD_PORT_BASE
      ? Number(process.env.FAULT_EJABBERD_PORT_BASE)
      : await freeInstanceBase(26200, 28200);
    const ejabberd = faultInstance(join(work, "ejabberd"), base);
    const stopEjabberd = () => ejabberdScript(o.root, ejabberd, "stop").then(() => {});
    await dropDatabase(new URL(ejabberd.sql).pathname.slice(1));
    cleanups.push(() => dropDatabase(new URL(ejabberd.sql).pathname.slice(1)));
    cleanups.push(stopEjabberd);
    const [db] = await Promise.all([
      startPrivatePostgres(),
      ejabberdScript(o.root, ejabberd, "start"),
    ]);
    pg = db;
    cleanups.push(() => db.destroy());

    const sidecarLog = join(work, "syncside.log");
    sidecar = sidecarProcess({
      root: o.root,
      port: await freePort(),
      logFile: sidecarLog,
      env: {
        DATABASE_URL: pg.url,
        XMPP_SERVICE: ejabberd.service,
        XMPP_DOMAIN: ejabberd.domain,
        OBSERVER_JID: ejabberd.observerJid,
        OBSERVER_PASSWORD: ejabberd.observerPassword,
        LOG_LEVEL: process.env.FAULT_LOG_LEVEL ?? "info",
      },
    });
    const side = sidecar;
    cleanups.push(() => side.dispose());
    await sidecar.start();

    const senders = await Promise.all(
      Array.from({ length: senderCount }, () => createUser(ejabberd, "sender")),
    );
    const recipients = await Promise.all(
      Array.from({ length: recipientCount }, () => createUser(ejabberd, "recipient")),
    );
    const senderIndex = new Map(senders.map((u, s) => [u.jid, s]));

    // What each recipient's client saw, by stanza id, and which sender it came from.
    const received = recipients.map(() => new Map<string, number>());
    let receivedAgain = 0;
    const onStanzaFor = (r: number) => (stanza: Element) => {
      if (!stanza.is("message") || !stanza.attrs.id) return;
      const from = String(stanza.attrs.from ?? "").split("/")[0] ?? "";
      const s = senderIndex.get(from);
      if (s === undefined) return;
      const seen = received[r] as Map<string, number>;
      if (seen.has(stanza.attrs.id)) receivedAgain++;
      else seen.set(stanza.attrs.id, s);
    };
    const onlineRecipients = recipients.length - 1;
    const senderClients: Client[] = [];
    const recipientClients: (Client | null)[] = recipients.map(() => null);
    const connectAll = async () => {
      await Promise.all([
        ...senders.map(async (u, s) => {
          senderClients[s] = await connect(ejabberd, u);
        }),
        ...recipients.slice(0, onlineRecipients).map(async (u, r) => {
          recipientClients[r] = await connect(ejabberd, u, onStanzaFor(r));
        }),
      ]);
    };
    const disconnectAll = () =>
      Promise.all([...senderClients, ...recipientClients].map((c) => disconnect(c)));
    cleanups.push(() => disconnectAll().then(() => {}));
    await connectAll();

    // Sending, bounded by a budget the fault driver raises step by step: each fault happens at
    // its point in the stream even when the burst is faster than a restart.
    const perSender = senders.map(
      (_, s) => Math.floor(total / senderCount) + (s < total % senderCount ? 1 : 0),
    );
    const acked = recipients.map(() => new Set<string>());
    let allowed = 0;
    let handedOut = 0;
    let progress = 0;
    let bodyless = 0;
    const faults: FaultReport["faults"] = [];
    const setupMs = Date.now() - started;
    const burstStarted = Date.now();

    const sendAll = async (s: number) => {
      for (let k = 0; k < (perSender[s] as number); ) {
        await waitFor(() => handedOut < allowed, {
          timeoutMs: 600_000,
          intervalMs: 5,
          what: "budget",
        });
        const n = Math.min(chunk, (perSender[s] as number) - k, allowed - handedOut);
        handedOut += n;
        const xmpp = senderClients[s] as Client;
        const batch = [];
        for (const end = k + n; k < end; k++) {
          const next = stanzaOf(s, k, recipients);
          batch.push(next);
          await xmpp.send(next.stanza);
        }
        // The server answers a ping only after routing everything this session sent before it.
        await xmpp.iqCaller.get(xml("ping", { xmlns: NS_PING }), undefined, 60_000);
        for (const b of batch) {
          (acked[b.r] as Set<string>).add(b.id);
          if (!b.id.endsWith("-m")) bodyless++;
        }
        progress += n;
      }
    };

    const until = (fraction: number) => Math.floor(total * fraction);
    const reach = async (fraction: number) => {
      allowed = Math.max(allowed, until(fraction));
      await waitFor(() => progress >= until(fraction), {
        timeoutMs: 300_000,
        intervalMs: 10,
        what: `${Math.round(fraction * 100)}% of the burst`,
      });
    };
    const fault = async (what: string, action: () => Promise<void>) => {
      const t = Date.now();
      await action();
      const entry = { at: progress, what, ms: Date.now() - t };
      faults.push(entry);
      log(`fault at ${entry.at}/${total}: ${what} (${entry.ms} ms)`);
    };
    const deliveredLive = () =>
      recipients
        .slice(0, onlineRecipients)
        .every((_, r) => [...(acked[r] as Set<string>)].every((id) => received[r]?.has(id)));

    const sending = Promise.all(senders.map((_, s) => sendAll(s)));
    sending.catch(() => {});
    const drive = async () => {
      await reach(0.15);
      await fault("syncside kill -9", () => side.kill9());
      await reach(0.3);
      const restart1 = fault("syncside restarted", () => side.start());
      await reach(0.45);
      await restart1;
      await fault("ejabberd restarted", async () => {
        // Senders are parked at the budget: let what is routed reach the clients, then restart.
        await waitFor(deliveredLive, { timeoutMs: 60_000, what: "live delivery before restart" });
        await disconnectAll();
        await stopEjabberd();
        await ejabberdScript(o.root, ejabberd, "start");
        await connectAll();
      });
      await reach(0.55);
      const pgRestart = fault("PostgreSQL restarted", () => db.restart());
      await reach(0.75);
      await pgRestart;
      await fault("syncside kill -9", () => side.kill9());
      const restart2 = fault("syncside restarted", () => side.start());
      await reach(1);
      await restart2;
    };
    await Promise.all([drive(), sending]);
    const burstMs = Date.now() - burstStarted;
    log(`burst of ${progress} stanzas acknowledged in ${burstMs} ms`);

    const settleStarted = Date.now();
    const offline = recipients.length - 1;
    recipientClients[offline] = await connect(
      ejabberd,
      recipients[offline] as TestUser,
      onStanzaFor(offline),
    );
    await waitFor(
      () =>
        recipients.every((_, r) =>
          [...(acked[r] as Set<string>)].every((id) => received[r]?.has(id)),
        ),
      { timeoutMs: 60_000 + total * 10, intervalMs: 100, what: "every recipient's stanzas" },
    ).catch((err) => {
      // Go on: the report compares the store with what the clients did receive.
      log(String(err));
      recipients.forEach((u, r) => {
        const lost = [...(acked[r] as Set<string>)].filter((id) => !received[r]?.has(id));
        if (lost.length > 0) log(`${u.jid} never received ${lost.length}: ${lost.slice(0, 20)}`);
      });
    });

    log(`deliveries to the recipients settled after ${Date.now() - settleStarted} ms`);

    // Expected per account: recipients' `in` events are what their clients got; senders' `out`
    // events are what the recipients got from them.
    const expected = new Map<string, { direction: "in" | "out"; ids: Set<string> }>();
    recipients.forEach((u, r) => {
      expected.set(u.jid, { direction: "in", ids: new Set(received[r]?.keys()) });
    });
    senders.forEach((u) => {
      expected.set(u.jid, { direction: "out", ids: new Set() });
    });
    received.forEach((seen) => {
      for (const [id, s] of seen) expected.get((senders[s] as TestUser).jid)?.ids.add(id);
    });

    const store = await openDb({ url: pg.url, dataDir: "memory://", maxConnections: 2 });
    cleanups.push(() => store.close());
    const eventsOf = (jid: string) =>
      store.db
        .select({
          seq: events.seq,
          kind: events.kind,
          direction: events.direction,
          messageId: events.messageId,
          lastSeq: accounts.lastSeq,
        })
        .from(events)
        .innerJoin(accounts, eq(accounts.id, events.accountId))
        .where(eq(accounts.jid, jid))
        .orderBy(asc(events.seq));
    const storedCount = async () => {
      let n = 0;
      for (const jid of expected.keys()) n += (await eventsOf(jid)).length;
      return n;
    };
    const wanted = [...expected.values()].reduce((n, e) => n + e.ids.size, 0);
    await waitFor(async () => (await storedCount()) >= wanted, {
      timeoutMs: 60_000 + total * 20,
      intervalMs: 250,
      what: `${wanted} events in the store`,
    }).catch((err) => log(String(err)));
    const settleMs = Date.now() - settleStarted;
    log(`store has ${await storedCount()} of ${wanted} events after ${settleMs} ms`);

    const report: FaultReport = {
      sent: progress,
      received: received.reduce((n, m) => n + m.size, 0),
      receivedAgain,
      bodyless,
      storedIn: 0,
      storedOut: 0,
      missing: 0,
      extra: 0,
      duplicated: 0,
      wrongKind: 0,
      seqGaps: 0,
      mismatches: [],
      faults,
      ms: { setup: setupMs, burst: burstMs, settle: settleMs, total: 0 },
    };
    for (const [jid, want] of expected) {
      const rows = await eventsOf(jid);
      const mine = rows.filter((e) => e.direction === want.direction);
      if (want.direction === "in") report.storedIn += mine.length;
      else report.storedOut += mine.length;
      const ids = mine.map((e) => e.messageId ?? "");
      const stored = new Set(ids);
      const m: AccountMismatch = {
        jid,
        missing: [...want.ids].filter((id) => !stored.has(id)),
        // Events of the other direction cannot exist here: senders receive nothing.
        extra: [
          ...ids.filter((id) => !want.ids.has(id)),
          ...rows
            .filter((e) => e.direction !== want.direction)
            .map((e) => `${e.direction}:${e.messageId}`),
        ],
        duplicated: ids.filter((id, index) => ids.indexOf(id) !== index),
        wrongKind: mine
          .filter((e) => KIND_OF_SUFFIX[(e.messageId ?? "").slice(-1)] !== e.kind)
          .map((e) => `${e.messageId}:${e.kind}`),
        seqGaps:
          rows.filter((e, index) => e.seq !== index + 1).length +
          (rows.length > 0 && rows[0]?.lastSeq !== rows.length ? 1 : 0),
      };
      report.missing += m.missing.length;
      report.extra += m.extra.length;
      report.duplicated += m.duplicated.length;
      report.wrongKind += m.wrongKind.length;
      report.seqGaps += m.seqGaps;
      if (m.missing.length + m.extra.length + m.duplicated.length + m.wrongKind.length + m.seqGaps)
        report.mismatches.push(m);
    }
    report.ms.total = Date.now() - started;
    failed = report.mismatches.length > 0 || report.sent !== total;
    if (failed) {
      log(`mismatches: ${JSON.stringify(report.mismatches, null, 1).slice(0, 4000)}`);
      log(`syncside log (${sidecarLog}):\n${await sidecar.logTail(120)}`);
    }
    return report;
  } catch (err) {
    log(`fault scenario failed: ${err instanceof Error ? err.stack : String(err)}`);
    if (sidecar) log(`syncside log:\n${await sidecar.logTail(120)}`);
    if (pg) log(`postgres log:\n${await pg.logTail()}`);
    throw err;
  } finally {
    await cleanup();
  }
}
