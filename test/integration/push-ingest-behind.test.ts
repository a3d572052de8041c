import { createECDH, randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureAccount } from "../../src/api/auth.js";
import type { ParsedCopy } from "../../src/ingest/parse.js";
import type { ApnsClient } from "../../src/push/apns.js";
import { registerDevice } from "../../src/push/devices.js";
import { type DispatcherOptions, PushDispatcher } from "../../src/push/dispatcher.js";
import type { SendResult } from "../../src/push/provider.js";
import { ingestedUpTo } from "../../src/store/checkpoint.js";
import type { Store } from "../../src/store/db.js";
import { appendBatch, type WriteOptions } from "../../src/store/events.js";
import { appendSettings } from "../../src/store/settings.js";
import { callSignal, copyOf } from "../helpers/copies.js";
import { openTestStore, type TestStore } from "../helpers/database.js";
import { capturingLogger } from "../helpers/log.js";
import { waitFor } from "../helpers/wait.js";

const options: WriteOptions = {
  isLocal: (jid) => jid.endsWith("@example.org"),
  callRingTimeoutMs: 60_000,
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * ejabberd publishes once per stanza, and may publish before ingest has stored it: while ingest
 * is behind, the dispatcher keeps looking. Here ingest's progress is set by hand, and the store
 * is written as ingest would write it, late.
 */
describe("push while ingest is behind ejabberd's publishes", () => {
  let t: TestStore;
  let n = 0;
  const dispatchers: PushDispatcher[] = [];
  beforeAll(async () => {
    t = await openTestStore("postgres");
  });
  afterAll(async () => {
    for (const d of dispatchers) d.close();
    await t?.close();
  });

  /** An iPhone of a new account, a dispatcher with a recording APNs sender, and ingest's clock. */
  async function setup(
    o: {
      answer?: (pushType: string) => SendResult;
      /** how far behind ingest is: its checkpoint, as a time; default far behind */
      ingested?: () => number | null;
      /** ingest's progress read from the checkpoint `live` writes, as the push leader reads it */
      checkpointed?: boolean;
    } & Partial<DispatcherOptions> = {},
  ) {
    n++;
    const alice = `alice-behind${n}-${randomBytes(2).toString("hex")}@example.org`;
    const source = `observer:behind-${n}-${randomBytes(3).toString("hex")}`;
    const bob = `bob-behind${n}@example.org`;
    const accountId = await ensureAccount(t.store.db, alice);
    const { device, secret } = await registerDevice(t.store.db, {
      accountId,
      platform: "apns",
      token: randomBytes(32).toString("hex"),
      voipToken: randomBytes(32).toString("hex"),
      appId: "org.example.app",
      environment: "production",
      p256dh: createECDH("prime256v1").generateKeys().toString("base64url"),
      auth: randomBytes(16).toString("base64url"),
      now: new Date(),
    });
    const sent: { pushType: string; at: number }[] = [];
    const apns = {
      send: async (req: { pushType: string }) => {
        sent.push({ pushType: req.pushType, at: Date.now() });
        return o.answer?.(req.pushType) ?? { ok: true };
      },
    } as unknown as ApnsClient;
    const { answer: _answer, ingested, checkpointed, ...rest } = o;
    const dispatcher = new PushDispatcher({
      store: t.store,
      logger: capturingLogger("silent").logger,
      senders: { apns, fcm: null },
      coalesceMs: 0,
      catchUpMs: 200,
      ingestedUpTo: checkpointed
        ? ingestedUpTo(t.store.db, source)
        : async () => (ingested ? ingested() : Date.now() - 60_000),
      ...rest,
    });
    dispatchers.push(dispatcher);
    /** ingest stores copies at once, with its checkpoint at their time, as it does when live */
    const live = async (...copies: ParsedCopy[]) => {
      const newest = Math.max(...copies.map((c) => c.sentAt.getTime()));
      await appendBatch(
        t.store.db,
        { copies, checkpoint: { source, position: String(newest * 1000) } },
        options,
      );
    };
    const write = (...copies: ParsedCopy[]) => appendBatch(t.store.db, { copies }, options);
    const publish = () => dispatcher.publish(device.node, secret);
    const kinds = () => sent.map((s) => s.pushType);
    const message = (id: string, sentAt: Date) =>
      copyOf({ kind: "message", from: bob, to: alice, messageId: id, body: id }, { sentAt });
    const propose = (callId: string, sentAt: Date) =>
      callSignal(bob, alice, { action: "propose", callId }, { sentAt });
    return { alice, bob, dispatcher, sent, kinds, write, live, publish, message, propose };
  }

  it("rings a call that ingest stores after the message it alerted for the same publish", async () => {
    const s = await setup();
    const publishedAt = Date.now();
    expect(await s.publish()).toEqual({ ok: true });
    expect(s.kinds()).toEqual([]);
    // The catch-up stores a message, then in a later batch the call, both sent before the publish.
    await s.write(s.message("m1", new Date(publishedAt - 300)));
    await waitFor(() => s.kinds().length === 1, { what: "the alert" });
    await s.write(s.propose("c1", new Date(publishedAt - 100)));
    await waitFor(() => s.kinds().length === 2, { what: "the VoIP push" });
    expect(s.kinds()).toEqual(["alert", "voip"]);
  });

  it("rings a call ingest stores later though the publish found an older message at once", async () => {
    const s = await setup();
    const publishedAt = Date.now();
    await s.write(s.message("m0", new Date(publishedAt - 5000)));
    expect(await s.publish()).toEqual({ ok: true });
    expect(s.kinds()).toEqual(["alert"]);
    await s.write(s.propose("c1", new Date(publishedAt - 50)));
    await waitFor(() => s.kinds().length === 2, { what: "the VoIP push" });
    expect(s.kinds()).toEqual(["alert", "voip"]);
  });

  it("takes a checkpoint short of the publish as not there yet", async () => {
    let publishedAt = Number.POSITIVE_INFINITY;
    // Ingest has stored copies up to 400 ms before the publish, not the stanza behind it.
    const s = await setup({ ingested: () => publishedAt - 400 });
    publishedAt = Date.now();
    expect(await s.publish()).toEqual({ ok: true });
    await sleep(1200);
    await s.write(s.message("late", new Date(publishedAt - 10)));
    await waitFor(() => s.kinds().length === 1, { what: "the alert" });
  });

  it("rings the call and alerts the message that ingest stores together, for two publishes", async () => {
    const s = await setup();
    const publishedAt = Date.now();
    expect(await s.publish()).toEqual({ ok: true });
    expect(await s.publish()).toEqual({ ok: true });
    await s.write(
      s.propose("c1", new Date(publishedAt - 200)),
      s.message("m1", new Date(publishedAt - 100)),
    );
    await waitFor(() => s.kinds().length === 2, { what: "the VoIP push and the alert" });
    expect(s.kinds()).toEqual(["voip", "alert"]);
  });

  it("pushes nothing sent after the publish: that stanza had a publish of its own, or none", async () => {
    const s = await setup();
    const publishedAt = Date.now();
    expect(await s.publish()).toEqual({ ok: true });
    // The phone woke, and a message came while it was online: ejabberd published nothing for it.
    await s.write(s.message("while-online", new Date(publishedAt + 5000)));
    await sleep(1500);
    expect(s.kinds()).toEqual([]);
    // The stanza the publish was for still comes through.
    await s.write(s.message("for-the-publish", new Date(publishedAt - 100)));
    await waitFor(() => s.kinds().length === 1, { what: "the alert" });
  });

  it("leaves a later message to its own publish after alerting an earlier one", async () => {
    const s = await setup();
    const publishedAt = Date.now();
    expect(await s.publish()).toEqual({ ok: true });
    // A live copy is written before the catch-up page that holds the earlier message.
    await s.write(s.message("later", new Date(publishedAt + 5000)));
    await s.write(s.message("earlier", new Date(publishedAt - 100)));
    await waitFor(() => s.kinds().length === 1, { what: "the alert for the earlier message" });
    // The later message's own publish still finds it.
    expect(await s.publish()).toEqual({ ok: true });
    expect(s.kinds()).toEqual(["alert", "alert"]);
  });

  it("tells how many devices it watches, for the gauge", async () => {
    let caughtUp = false;
    const watched: number[] = [];
    const s = await setup({
      ingested: () => (caughtUp ? Date.now() + 60_000 : Date.now() - 60_000),
      onWatched: (devices) => watched.push(devices),
    });
    expect(await s.publish()).toEqual({ ok: true });
    expect(watched).toEqual([1]);
    caughtUp = true;
    await waitFor(() => watched.at(-1) === 0, { what: "the watch to end" });
    expect(watched).toEqual([1, 0]);
  });

  it("keeps watching through a failed read of ingest's progress", async () => {
    let reads = 0;
    const s = await setup({
      ingested: () => {
        reads++;
        if (reads === 2) throw new Error("connection reset");
        return Date.now() - 60_000;
      },
    });
    const publishedAt = Date.now();
    expect(await s.publish()).toEqual({ ok: true });
    await waitFor(() => reads >= 3, { what: "a read after the failed one" });
    await s.write(s.message("m1", new Date(publishedAt - 100)));
    await waitFor(() => s.kinds().length === 1, { what: "the alert" });
  });

  it("stops watching after ingestWaitMs, quietly: a publish may be for a stanza ingest never copies", async () => {
    const { logger, lines } = capturingLogger("debug");
    const s = await setup({ logger, ingestWaitMs: 1500 });
    const publishedAt = Date.now();
    expect(await s.publish()).toEqual({ ok: true });
    await waitFor(
      () => lines.some((l) => l.msg === "stopped waiting for ingest to reach a publish"),
      {
        what: "the watch to end",
      },
    );
    expect(lines.filter((l) => l.level >= 40)).toEqual([]);
    // Nothing watches any more: what ingest stores now waits for a publish of its own.
    await s.write(s.message("m1", new Date(publishedAt - 100)));
    await sleep(1500);
    expect(s.kinds()).toEqual([]);
  });

  const old410 = (pushType: string): SendResult =>
    pushType === "voip"
      ? {
          ok: false,
          kind: "unregistered",
          reason: "Unregistered",
          at: new Date(Date.now() - 3_600_000),
        }
      : { ok: true };

  it("rings a call APNs answers with an old 410 once per publish, not at every look", async () => {
    const s = await setup({ answer: old410, checkpointed: true });
    await s.live(s.propose("c1", new Date()));
    expect(await s.publish()).toEqual({ ok: true });
    await sleep(1000);
    expect(s.kinds()).toEqual(["voip"]);
    // While ingest is behind, the watch's looks at later changes leave it too.
    const behind = await setup({ answer: old410 });
    const publishedAt = Date.now();
    await behind.write(behind.propose("c1", new Date(publishedAt - 100)));
    expect(await behind.publish()).toEqual({ ok: true });
    for (let i = 0; i < 3; i++) {
      await sleep(300);
      await behind.write(behind.message(`later${i}`, new Date(publishedAt + 5000 + i)));
    }
    await sleep(1000);
    expect(behind.kinds()).toEqual(["voip"]);
  });

  it("after a late VoIP push, looks for more only among what was sent before the publish", async () => {
    const s = await setup();
    const publishedAt = Date.now();
    expect(await s.publish()).toEqual({ ok: true });
    // The call the publish was for, and a message the phone, awake by then, got live.
    await s.write(
      s.propose("c1", new Date(publishedAt - 100)),
      s.message("while-online", new Date(publishedAt + 5000)),
    );
    await waitFor(() => s.kinds().length >= 1, { what: "the VoIP push" });
    await sleep(1500);
    expect(s.kinds()).toEqual(["voip"]);
  });

  it("keeps watching a publish that came while the watch for an older one was ending", async () => {
    let checkpoint = 0;
    let slow = false;
    let onRead: (() => void) | null = null;
    const s = await setup({
      ingestedUpTo: async () => {
        const value = checkpoint;
        const hook = onRead;
        onRead = null;
        hook?.();
        if (slow) await sleep(300);
        return value;
      },
    });
    const p1 = Date.now();
    checkpoint = p1 - 60_000;
    expect(await s.publish()).toEqual({ ok: true });
    await sleep(800);
    // Ingest reaches the first publish; a second comes while the watch reads that.
    checkpoint = p1 + 600;
    slow = true;
    let p2 = 0;
    await new Promise<void>((resolve) => {
      onRead = () => {
        p2 = Date.now();
        void s.publish().then(() => resolve());
      };
    });
    slow = false;
    await sleep(500);
    await s.write(s.message("for-p2", new Date(p2 - 50)));
    await sleep(500);
    checkpoint = Date.now() + 60_000;
    await waitFor(() => s.kinds().length === 1, { what: "the alert for the second publish" });
  });

  it("counts a throttled device's back-off once, not once per change ingest stores", async () => {
    const outcomes: string[] = [];
    const s = await setup({
      answer: (pushType) =>
        pushType === "alert"
          ? { ok: false, kind: "throttled", reason: "TooManyRequests", retryAfterMs: 10_000 }
          : { ok: true },
      onOutcome: (_platform, kind, outcome) => outcomes.push(`${kind}:${outcome}`),
    });
    const publishedAt = Date.now();
    await s.write(s.message("m0", new Date(publishedAt - 100)));
    expect(await s.publish()).toEqual({ ok: true });
    for (let i = 0; i < 5; i++) {
      await sleep(200);
      await s.write(s.message(`later${i}`, new Date(publishedAt + 5000 + i)));
    }
    await sleep(500);
    expect(outcomes).toEqual(["alert:throttled"]);
  });

  it("watches a device whose publish's own look failed on a database error", async () => {
    let failNext = false;
    const db = new Proxy(t.store.db, {
      get(target, prop) {
        if (prop === "transaction" && failNext) {
          failNext = false;
          return async () => {
            throw new Error("connection reset");
          };
        }
        const value = Reflect.get(target, prop, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const store = new Proxy(t.store, {
      get(target, prop) {
        if (prop === "db") return db;
        const value = Reflect.get(target, prop, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    }) as Store;
    const s = await setup({ store });
    const publishedAt = Date.now();
    failNext = true;
    await expect(s.publish()).rejects.toThrow("connection reset");
    await s.write(s.message("m1", new Date(publishedAt - 100)));
    await waitFor(() => s.kinds().length === 1, { what: "the alert" });
  });

  it("does not alert late a message that came while its conversation was muted", async () => {
    const s = await setup();
    await appendSettings(t.store.db, {
      accountJid: s.alice,
      peer: s.bob,
      change: { mutedUntil: new Date(Date.now() + 1000) },
      now: new Date(),
    });
    const publishedAt = Date.now();
    expect(await s.publish()).toEqual({ ok: true });
    // Ingest stores the message, sent while muted, after the mute ran out.
    await sleep(1500);
    await s.write(s.message("while-muted", new Date(publishedAt - 100)));
    await sleep(1500);
    expect(s.kinds()).toEqual([]);
  });

  describe("leaves what a look found and could not push to the next publish or the retry", () => {
    const unavailable = (): SendResult => ({
      ok: false,
      kind: "unavailable",
      reason: "503",
      retryAfterMs: null,
    });
    const refusals: [string, () => SendResult][] = [
      ["unavailable", unavailable],
      ["rejected", () => ({ ok: false, kind: "rejected", reason: "PayloadTooLarge" })],
      ["an old 410", () => old410("voip")],
    ];
    /** Changes of the account while its device is watched: another device of alice writes. */
    async function aliceWrites(s: Awaited<ReturnType<typeof setup>>) {
      for (let i = 0; i < 3; i++) {
        await sleep(300);
        await s.live(
          copyOf(
            { kind: "message", from: s.alice, to: s.bob, messageId: `out${i}`, body: "x" },
            { sentAt: new Date(Date.now() - 600) },
          ),
        );
      }
      await sleep(500);
    }

    it.each(refusals)("an alert the provider answered %s", async (_name, answer) => {
      const s = await setup({ answer, checkpointed: true });
      await s.live(s.message("m1", new Date(Date.now() - 20)));
      await s.publish();
      const byPublish = s.sent.length;
      await aliceWrites(s);
      expect(s.sent.length).toBe(byPublish);
    });

    it("a call whose push found APNs unavailable: tried again after callRetryMs, not at once", async () => {
      const s = await setup({ answer: unavailable, checkpointed: true, callRetryMs: 3000 });
      await s.live(s.propose("c1", new Date(Date.now() - 20)));
      await s.publish();
      const byPublish = s.sent.length;
      await aliceWrites(s);
      expect(s.sent.length).toBe(byPublish);
      await waitFor(() => s.sent.length > byPublish, { what: "the retry after callRetryMs" });
    });
  });
});
