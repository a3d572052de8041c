import { createECDH, randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureAccount } from "../../src/api/auth.js";
import type { ParsedCopy } from "../../src/ingest/parse.js";
import type { ApnsClient } from "../../src/push/apns.js";
import { registerDevice } from "../../src/push/devices.js";
import { type DispatcherOptions, PushDispatcher } from "../../src/push/dispatcher.js";
import type { SendResult } from "../../src/push/provider.js";
import { appendBatch, type WriteOptions } from "../../src/store/events.js";
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
      /** how far behind ingest is: its checkpoint, as a time */
      ingested?: () => number | null;
    } & Partial<DispatcherOptions> = {},
  ) {
    n++;
    const alice = `alice-behind${n}-${randomBytes(2).toString("hex")}@example.org`;
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
    const { answer: _answer, ingested, ...rest } = o;
    const dispatcher = new PushDispatcher({
      store: t.store,
      logger: capturingLogger("silent").logger,
      senders: { apns, fcm: null },
      coalesceMs: 0,
      catchUpMs: 200,
      ingestedUpTo: async () => (ingested ? ingested() : Date.now() - 60_000),
      ...rest,
    });
    dispatchers.push(dispatcher);
    const write = (...copies: ParsedCopy[]) => appendBatch(t.store.db, { copies }, options);
    const publish = () => dispatcher.publish(device.node, secret);
    const kinds = () => sent.map((s) => s.pushType);
    const message = (id: string, sentAt: Date) =>
      copyOf({ kind: "message", from: bob, to: alice, messageId: id, body: id }, { sentAt });
    const propose = (callId: string, sentAt: Date) =>
      callSignal(bob, alice, { action: "propose", callId }, { sentAt });
    return { dispatcher, sent, kinds, write, publish, message, propose };
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
    const { logger, lines } = capturingLogger("info");
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

  it("does not ring again and again a call whose VoIP push APNs answers with an old 410", async () => {
    const s = await setup({
      ingested: () => Date.now() + 60_000,
      answer: (pushType) =>
        pushType === "voip"
          ? {
              ok: false,
              kind: "unregistered",
              reason: "Unregistered",
              at: new Date(Date.now() - 3_600_000),
            }
          : { ok: true },
    });
    await s.write(s.propose("c1", new Date()));
    expect(await s.publish()).toEqual({ ok: true });
    await sleep(1000);
    expect(s.kinds()).toEqual(["voip"]);
  });
});
