import { xml } from "@xmpp/client";
import { and, eq, gt } from "drizzle-orm";
import { ensureAccount } from "../../src/api/auth.js";
import { CHANGES_CHANNEL } from "../../src/store/events.js";
import { events } from "../../src/store/schema/events.js";
import { connectUser, createUser } from "../../test/helpers/ejabberd.js";
import { waitFor } from "../../test/helpers/wait.js";
import { watchCopies } from "../archive.js";
import { Phone } from "../phone.js";
import type { Figure, Scenario } from "../scenario.js";
import { ratioOf, targetOf } from "../scenario.js";
import { phoneToken, startIngestingSidecar } from "../sidecar.js";
import { percentile } from "../stats.js";

export function lagFigures(prefix: string, lags: number[], what: string): Figure[] {
  const sorted = [...lags].sort((a, b) => a - b);
  return [
    { name: `${prefix}.p50`, value: percentile(sorted, 50), unit: "ms", note: what },
    { name: `${prefix}.p90`, value: percentile(sorted, 90), unit: "ms" },
    { name: `${prefix}.p99`, value: percentile(sorted, 99), unit: "ms" },
    { name: `${prefix}.max`, value: sorted.at(-1) ?? Number.NaN, unit: "ms" },
  ];
}

export const ingestLiveLag: Scenario = {
  name: "ingest-live-lag",
  description: "live lag from a client's send to the message in bob's /v1/sync",
  async run(ctx) {
    const n = ctx.sized(2000, 100);
    const rate = Number(process.env.BENCH_LIVE_RATE ?? 50);
    const ej = await ctx.ejabberd();
    const db = await ctx.postgres();
    const alice = await createUser(ej, "lag-alice");
    const bob = await createUser(ej, "lag-bob");

    // Start after whatever earlier scenarios left in the archive: only live lag is measured here.
    const { sidecar, port } = await startIngestingSidecar(ej, db, { probe: "bench-probe-lag" });
    ctx.defer(() => sidecar.stop());
    const base = `http://127.0.0.1:${port}`;
    const bobId = await ensureAccount(db.store.db, bob.jid);
    const sentAt = new Map<string, number>();
    const storeLag = new Map<string, number>();

    // bob's phone: one long-poll after another, as the app holds it while in the foreground.
    const phone = new Phone(base, await phoneToken(db.store.db, bob.jid));
    await phone.start();
    /** send → first shown in bob's sync, of the messages sent since `clear` */
    const syncLag = () =>
      new Map(
        [...phone.seen].flatMap(([id, at]) => {
          const sent = sentAt.get(id);
          return sent === undefined ? [] : [[id, at - sent] as const];
        }),
      );

    // The store itself: woken by the same NOTIFY the API listens to, then reads bob's new events.
    let seenSeq = 0;
    let reading: Promise<void> = Promise.resolve();
    const readNew = async () => {
      const rows = await db.store.db
        .select({ seq: events.seq, messageId: events.messageId })
        .from(events)
        .where(and(eq(events.accountId, bobId), gt(events.seq, seenSeq)));
      const now = performance.now();
      for (const row of rows) {
        seenSeq = Math.max(seenSeq, row.seq);
        const sent = row.messageId ? sentAt.get(row.messageId) : undefined;
        if (sent !== undefined && row.messageId && !storeLag.has(row.messageId)) {
          storeLag.set(row.messageId, now - sent);
        }
      }
    };
    const unlisten = await db.store.listen(CHANGES_CHANNEL, (payload) => {
      if (payload.split(",").includes(String(bobId))) reading = reading.then(readNew);
    });
    ctx.defer(unlisten);

    // A second observer session with presence gets every live copy too: when it arrives is
    // ejabberd's share of the lag (send → tap → routed copy), the rest is syncside's.
    const copyLag = new Map<string, number>();
    const witness = await watchCopies(ej, "bench-witness", (id) => {
      const sent = sentAt.get(id);
      if (sent !== undefined && !copyLag.has(id)) copyLag.set(id, performance.now() - sent);
    });
    ctx.defer(async () => {
      await witness.stop().catch(() => {});
    });

    ctx.progress(`alice sends ${n} messages to bob at ${rate}/s`);
    const xmpp = await connectUser(ej, alice, "phone");
    ctx.defer(async () => {
      await xmpp.stop().catch(() => {});
    });
    (xmpp.socket as unknown as { setNoDelay?: (on: boolean) => void } | null)?.setNoDelay?.(true);
    const interval = 1000 / rate;
    const send = async (prefix: string, count: number) => {
      const started = performance.now();
      for (let i = 0; i < count && !ctx.signal.aborted; i++) {
        const wait = started + i * interval - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        const id = `${prefix}-${i}`;
        sentAt.set(id, performance.now());
        await xmpp.send(
          xml(
            "message",
            { to: bob.jid, id, type: "chat" },
            xml("body", {}, `message ${i}`),
            xml("markable", { xmlns: "urn:xmpp:chat-markers:0" }),
          ),
        );
      }
      return performance.now() - started;
    };
    // Warm-up: the first messages pay for JIT and fresh connections; they are not counted.
    await send("warm", 20);
    await waitFor(() => syncLag().size >= 20, { timeoutMs: 60_000, what: "warm-up messages" });
    for (const lags of [sentAt, storeLag, copyLag]) lags.clear();
    const sendMs = await send("lag", n);
    await waitFor(() => syncLag().size >= n && storeLag.size >= n, {
      timeoutMs: 60_000,
      what: `all ${n} messages in bob's sync`,
    }).catch(() => {});
    // The last long-poll ends when something changes or after its wait: nudge it with one more.
    await phone.stop(() =>
      xmpp.send(xml("message", { to: bob.jid, id: "lag-end", type: "chat" }, xml("body", {}, "."))),
    );
    await reading;

    const synced = syncLag();
    const figures: Figure[] = [
      ...lagFigures("sync", [...synced.values()], "send → in bob's long-polled GET /v1/sync"),
      ...lagFigures("store", [...storeLag.values()], "send → committed (NOTIFY + read)"),
      ...lagFigures("copy", [...copyLag.values()], "send → copy at an observer session (ejabberd)"),
      ...lagFigures(
        "syncside",
        [...synced].flatMap(([id, lag]) => {
          const copy = copyLag.get(id);
          return copy === undefined ? [] : [lag - copy];
        }),
        "per message: sync − copy, syncside's own part (ingest, commit, long-poll wake-up)",
      ),
      {
        name: "rate",
        value: (n / sendMs) * 1000,
        unit: "msg/s",
        note: "achieved send rate",
      },
      {
        name: "missing",
        value: n - synced.size,
        unit: "msgs",
        note: "sent, but not in bob's sync within 60 s (the percentiles leave them out)",
      },
    ];
    return {
      params: { messages: n, rate, seen_in_sync: synced.size, seen_in_store: storeLag.size },
      figures,
      ratios: [
        ratioOf(figures, "syncside's share of the lag, p50", "syncside.p50", "sync.p50"),
        ratioOf(figures, "ejabberd's share of the lag, p50", "copy.p50", "sync.p50"),
      ],
      targets: [targetOf(figures, "sync.p99", "<=", 100), targetOf(figures, "missing", "<=", 0)],
      notes: [
        "alice (@xmpp/client, TCP_NODELAY) sends one-to-one messages to bob at a steady rate through the bench ejabberd; a real sidecar process (dist/src/main.js, as npm start runs it: ingest + API on PostgreSQL) mirrors them",
        "bob's phone is a long-poll loop on GET /v1/sync?since=P&wait=20&messages=200 to that process over loopback HTTP; lag = first response containing the message − the moment before alice's send",
        "store: the moment a NOTIFY on syncside_changes for bob is followed by a read that sees the event",
        "copy: the moment a second observer session (presence, same priority as ingest's) receives the live copy — ejabberd's part of the lag",
        "sender, ejabberd, ingest, API and PostgreSQL share this machine's cores, so the figures include their contention",
        ...(synced.size < n
          ? [`only ${synced.size} of ${n} messages reached bob's sync in time`]
          : []),
      ],
    };
  },
};
