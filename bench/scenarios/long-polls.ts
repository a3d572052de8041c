import { Agent, request } from "node:http";
import { xml } from "@xmpp/client";
import { connectUser, createUser } from "../../test/helpers/ejabberd.js";
import { waitFor } from "../../test/helpers/wait.js";
import { type Figure, ratioOf, type Scenario, targetOf } from "../scenario.js";
import { phoneToken, rssMb, startIngestingSidecar } from "../sidecar.js";

const WAIT_S = 30;
const METRICS_TOKEN = "bench-metrics-token-0123456789";

interface Answer {
  status: number;
  body: string;
}

function get(agent: Agent, port: number, path: string, token: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port, path, agent, headers: { authorization: `Bearer ${token}` } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end();
  });
}

/** Runs `fn` over `items`, at most `n` at a time. */
async function pool<T, R>(items: T[], n: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i] as T);
      }
    }),
  );
  return out;
}

interface Poll {
  jid: string;
  token: string;
  position: string;
  answeredAt: number | null;
  answer: Answer | null;
}

export const longPolls: Scenario = {
  name: "long-polls",
  description: `1,000 concurrent GET /v1/sync?wait=${WAIT_S} held by one sidecar process: RSS and wake-up`,
  async run(ctx) {
    const n = ctx.sized(1000, 50);
    const ej = await ctx.ejabberd();
    const db = await ctx.postgres();
    // Two real accounts exchange the one change; the other polls are accounts of the store only.
    const sender = await createUser(ej, "lp-sender");
    const target = await createUser(ej, "lp-target");

    ctx.progress("npm run build: the process under test is dist/src/main.js, as npm start runs it");
    const { sidecar, port } = await startIngestingSidecar(ej, db, {
      probe: "bench-probe-polls",
      env: { METRICS_TOKEN },
    });
    ctx.defer(() => sidecar.stop());
    const openPolls = async () => {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`, {
        headers: { authorization: `Bearer ${METRICS_TOKEN}` },
      });
      const line = /^syncside_sync_long_polls_open (\d+)/m.exec(await res.text());
      return Number(line?.[1] ?? Number.NaN);
    };

    const readyRss = await rssMb(sidecar.pid);
    ctx.progress(`${n} accounts with tokens and a first sync each`);
    const jids = [
      sender.jid,
      target.jid,
      ...Array.from(
        { length: n - 2 },
        (_, i) => `lp-${i.toString().padStart(5, "0")}@${ej.domain}`,
      ),
    ];
    // One socket per poll: a phone holds its own connection.
    const agent = new Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY });
    ctx.defer(() => agent.destroy());
    const polls: Poll[] = await pool(jids, 20, async (jid) => {
      const token = await phoneToken(db.store.db, jid);
      const first = await get(agent, port, "/v1/sync", token);
      if (first.status !== 200) throw new Error(`first sync answered ${first.status}`);
      const { position } = JSON.parse(first.body) as { position: string };
      return { jid, token, position, answeredAt: null, answer: null };
    });
    const xmpp = await connectUser(ej, sender, "phone");
    ctx.defer(async () => {
      await xmpp.stop().catch(() => {});
    });
    (xmpp.socket as unknown as { setNoDelay(on: boolean): void }).setNoDelay(true);

    const idle: number[] = [];
    for (let i = 0; i < 5; i++) {
      idle.push(await rssMb(sidecar.pid));
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const idleRss = Math.max(...idle);

    ctx.progress(`opening ${n} long-polls (wait=${WAIT_S})`);
    const opened = performance.now();
    const pending = polls.map(async (poll) => {
      const path = `/v1/sync?since=${encodeURIComponent(poll.position)}&wait=${WAIT_S}`;
      poll.answer = await get(agent, port, path, poll.token).catch((err) => ({
        status: 0,
        body: String(err),
      }));
      poll.answeredAt = performance.now();
    });
    let held = 0;
    await waitFor(
      async () => {
        held = await openPolls();
        return held >= n;
      },
      {
        timeoutMs: 20_000,
        intervalMs: 100,
        what: `${n} long-polls held by the sidecar`,
      },
    );
    const openMs = performance.now() - opened;
    const heldRss: number[] = [];
    for (let i = 0; i < 10; i++) {
      heldRss.push(await rssMb(sidecar.pid));
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const earlyAnswers = polls.filter((p) => p.answeredAt !== null).length;

    ctx.progress("one message from one polled account to another");
    const sentAt = performance.now();
    await xmpp.send(
      xml(
        "message",
        { to: target.jid, id: "wake-1", type: "chat" },
        xml("body", {}, "are you awake?"),
      ),
    );
    const woken = polls.filter((p) => p.jid === sender.jid || p.jid === target.jid);
    await waitFor(() => woken.every((p) => p.answeredAt !== null), {
      timeoutMs: 10_000,
      intervalMs: 2,
      what: "the two affected polls to answer",
    });
    const wakeMs = woken.map((p) => (p.answeredAt as number) - sentAt);
    // Anything else that answers within a second was woken wrongly.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const answered = polls.filter((p) => p.answeredAt !== null);
    const stillHeld = await openPolls();
    const withChange = woken.filter(
      (p) =>
        p.answer?.status === 200 &&
        (JSON.parse(p.answer.body) as { conversations: unknown[] }).conversations.length === 1,
    ).length;
    const afterRss = await rssMb(sidecar.pid);
    agent.destroy();
    await Promise.allSettled(pending);

    const peakHeld = Math.max(...heldRss);
    const figures: Figure[] = [
      {
        name: "rss.ready",
        value: readyRss,
        unit: "MB",
        note: "sidecar process (VmRSS) once ready, before any request",
      },
      {
        name: "rss.idle",
        value: idleRss,
        unit: "MB",
        note: "sidecar process (VmRSS) after every account's first sync, no poll open",
      },
      {
        name: "rss.held",
        value: peakHeld,
        unit: "MB",
        note: `peak of 10 samples over 2 s while ${held} long-polls were held`,
      },
      {
        name: "rss.per_poll",
        value: ((peakHeld - idleRss) * 1024) / n,
        unit: "KB",
        note: "(held − idle) / polls; garbage collection makes it noisy, even negative",
      },
      { name: "open.ms", value: openMs, unit: "ms", note: `until /metrics showed ${n} held` },
      {
        name: "wake.max",
        value: Math.max(...wakeMs),
        unit: "ms",
        note: "send → both affected polls answered (ejabberd, ingest, commit, NOTIFY, read)",
      },
      {
        name: "woken",
        value: answered.length - earlyAnswers,
        unit: "polls",
        note: `answered within 1 s of the change, of ${n} (${withChange} of the 2 affected with the conversation)`,
      },
      { name: "still_held", value: stillHeld, unit: "polls", note: "after the change" },
    ];
    return {
      params: { polls: n, wait_s: WAIT_S, answered_before_change: earlyAnswers },
      figures,
      ratios: [
        ratioOf(figures, "RSS held / idle", "rss.held", "rss.idle"),
        ratioOf(figures, "RSS held / ready", "rss.held", "rss.ready"),
      ],
      targets: [
        targetOf(figures, "rss.held", "<=", 200),
        {
          figure: "woken",
          op: "<=",
          value: 2,
          met: answered.length - earlyAnswers === 2 && withChange === 2 && earlyAnswers === 0,
        },
      ],
      notes: [
        `a real sidecar process (dist/src/main.js built by npm run build, as npm start runs it: ingest + API on PostgreSQL); ${n} accounts each hold one GET /v1/sync?since=P&wait=${WAIT_S} on its own keep-alive HTTP connection from this process`,
        "RSS is the sidecar's VmRSS from /proc/<pid>/status; the baseline is the same process idle after the first syncs, before any poll is open",
        `the change: ${sender.jid.split("@")[0]} sends one message to ${target.jid.split("@")[0]} through ejabberd; both hold a poll (one out event, one in event), so exactly those two must answer, with that conversation, and the other ${n - 2} stay held`,
        `after the change: ${afterRss} MB RSS`,
      ],
    };
  },
};
