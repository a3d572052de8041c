import { createECDH, generateKeyPairSync, randomBytes } from "node:crypto";
import { type Client, xml } from "@xmpp/client";
import { eq } from "drizzle-orm";
import { decrypt } from "http_ece";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { ParsedCopy } from "../../src/ingest/parse.js";
import { createLogger } from "../../src/logger.js";
import { ApnsClient } from "../../src/push/apns.js";
import { ApnsTokenSigner } from "../../src/push/apns-token.js";
import { handlePublishIq, NS_PUBSUB } from "../../src/push/app-server.js";
import { type DispatcherOptions, PushDispatcher } from "../../src/push/dispatcher.js";
import { createPushSenders, runPush } from "../../src/push/leader.js";
import { appendBatch } from "../../src/store/events.js";
import { accounts } from "../../src/store/schema/accounts.js";
import { pushDeliveries } from "../../src/store/schema/push-deliveries.js";
import { pushDevices } from "../../src/store/schema/push-devices.js";
import { expectContract } from "../helpers/contract.js";
import {
  callSignal,
  copyOf,
  displayed,
  edit,
  nextTime,
  react,
  retract,
} from "../helpers/copies.js";
import { connectUser, createUser, type TestUser } from "../helpers/ejabberd.js";
import { createHarness, type Harness } from "../helpers/harness.js";
import { ingestEnv, type RunningIngest, startIngest } from "../helpers/ingest.js";
import { type ApnsHit, startApns, startFcm } from "../helpers/push-providers.js";
import { waitFor } from "../helpers/wait.js";

const ejabberd = inject("ejabberd");
const PUSH_DOMAIN = `push.${ejabberd.domain}`;
const APP = "org.example.chat";
const JMI = "urn:xmpp:jingle-message:0";
const COALESCE_MS = 700;

interface Device {
  id: string;
  node: string;
  secret: string;
  jid: string;
  disabled_at: string | null;
  disabled_reason: string | null;
}

/** The device's side of RFC 8291: a P-256 key pair and an auth secret that never leave it. */
function deviceKeys() {
  const ecdh = createECDH("prime256v1");
  ecdh.generateKeys();
  const auth = randomBytes(16);
  return {
    ecdh,
    auth,
    encryption: {
      p256dh: ecdh.getPublicKey().toString("base64url"),
      auth: auth.toString("base64url"),
    },
  };
}
type Keys = ReturnType<typeof deviceKeys>;

function decryptNotice(encrypted: string, keys: Keys): Record<string, unknown> {
  const plain = decrypt(Buffer.from(encrypted, "base64url"), {
    version: "aes128gcm",
    privateKey: keys.ecdh,
    authSecret: keys.auth,
  });
  return JSON.parse(plain.toString("utf8"));
}

const hexToken = () => randomBytes(32).toString("hex");

const chat = (to: string, body: string) =>
  xml(
    "message",
    { to, type: "chat", id: `m-${randomBytes(4).toString("hex")}` },
    xml("body", {}, body),
  );
/** As Conversations sends it: a JMI propose with a storage hint, so an offline callee gets it. */
const propose = (to: string, id: string) =>
  xml(
    "message",
    { to, type: "chat", id: `propose-${id}` },
    xml(
      "propose",
      { xmlns: JMI, id },
      xml("description", { xmlns: "urn:xmpp:jingle:apps:rtp:1", media: "audio" }),
    ),
    xml("store", { xmlns: "urn:xmpp:hints" }),
  );

describe("push: ejabberd's mod_push → syncside's app server → APNs / FCM", () => {
  const apnsKey = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const googleKey = generateKeyPairSync("rsa", { modulusLength: 2048 });
  let apns: Awaited<ReturnType<typeof startApns>>;
  let fcm: Awaited<ReturnType<typeof startFcm>>;
  let h: Harness;
  let ingest: RunningIngest;
  const stopPush = new AbortController();
  let pushDone: Promise<void>;
  const outcomes: string[] = [];
  let env: Record<string, string>;
  const clients: Client[] = [];

  beforeAll(async () => {
    apns = await startApns({
      publicKey: apnsKey.publicKey,
      keyId: "KEYID12345",
      teamId: "TEAM123456",
    });
    fcm = await startFcm({
      publicKey: googleKey.publicKey,
      clientEmail: "push@test-project.iam.gserviceaccount.com",
      project: "test-project",
    });
    env = {
      ...ingestEnv(ejabberd),
      PUSH_COMPONENT_SECRET: ejabberd.pushSecret,
      PUSH_COMPONENT_SERVICE: `xmpp://127.0.0.1:${ejabberd.componentPort}`,
      PUSH_COALESCE: `${COALESCE_MS}ms`,
      APNS_KEY: apnsKey.privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
      APNS_KEY_ID: "KEYID12345",
      APNS_TEAM_ID: "TEAM123456",
      APNS_PRODUCTION_URL: apns.url,
      APNS_SANDBOX_URL: apns.url,
      APNS_CA: apns.ca,
      FCM_SERVICE_ACCOUNT: JSON.stringify({
        type: "service_account",
        project_id: "test-project",
        private_key_id: "k1",
        private_key: googleKey.privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
        client_email: "push@test-project.iam.gserviceaccount.com",
        token_uri: "https://oauth2.googleapis.com/token",
      }),
      FCM_TOKEN_URL: `${fcm.url}/token`,
      FCM_BASE_URL: fcm.url,
    };
    h = await createHarness({ env });
    ingest = await startIngest(h.store, ejabberd, env);
    let online = false;
    pushDone = runPush({
      store: h.store,
      config: h.config,
      logger: createLogger(process.env.TEST_LOG_LEVEL ?? "silent"),
      signal: stopPush.signal,
      onOutcome: (platform, kind, outcome) => outcomes.push(`${platform} ${kind} ${outcome}`),
      onRole: (role) => {
        if (role === "online") online = true;
      },
    });
    await waitFor(() => online, { what: "push component online", timeoutMs: 15_000 });
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.stop().catch(() => {})));
    stopPush.abort();
    await pushDone;
    await ingest?.stop();
    await h?.close();
    await apns?.close();
    await fcm?.close();
  });

  async function online(user: TestUser, resource = "phone") {
    const c = await connectUser(ejabberd, user, resource);
    clients.push(c);
    return c;
  }

  async function register(
    token: string,
    body: Record<string, unknown>,
  ): Promise<{ device: Device; keys: Keys }> {
    const keys = deviceKeys();
    const res = await h.get("/v1/push/devices", token, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        app_id: APP,
        environment: "sandbox",
        encryption: keys.encryption,
        ...body,
      }),
    });
    expect(res.status).toBe(201);
    return { device: await expectContract<Device>(res, "POST", "/v1/push/devices"), keys };
  }

  /** The phone's XEP-0357 enable, then it goes offline: from now on ejabberd publishes. */
  async function enableAndLeave(user: TestUser, device: Device) {
    const phone = await connectUser(ejabberd, user, "phone");
    await phone.iqCaller.request(
      xml(
        "iq",
        { type: "set" },
        xml(
          "enable",
          { xmlns: "urn:xmpp:push:0", jid: device.jid, node: device.node },
          xml(
            "x",
            { xmlns: "jabber:x:data", type: "submit" },
            xml(
              "field",
              { var: "FORM_TYPE" },
              xml("value", {}, "http://jabber.org/protocol/pubsub#publish-options"),
            ),
            xml("field", { var: "secret" }, xml("value", {}, device.secret)),
          ),
        ),
      ),
    );
    await phone.stop();
  }

  async function pushUser() {
    const alice = await createUser(ejabberd, "alice");
    const bob = await createUser(ejabberd, "bob");
    const token = await h.token(alice.jid);
    return { alice, bob, token, bobClient: await online(bob) };
  }

  /** alice's iPhone, registered for alerts and VoIP, push enabled on ejabberd, gone to sleep. */
  async function sleepingIPhone() {
    const users = await pushUser();
    const alertToken = hexToken();
    const voipToken = hexToken();
    const { device, keys } = await register(users.token, {
      platform: "apns",
      token: alertToken,
      voip_token: voipToken,
    });
    await enableAndLeave(users.alice, device);
    return { ...users, alertToken, voipToken, device, keys };
  }

  const hitsFor = (token: string) => apns.hits.filter((hit) => hit.token === token);
  /** The notices of the alerts a device's token got, decrypted. */
  const alertsTo = (token: string, keys: Keys) =>
    hitsFor(token).map((hit) => decryptNotice(String(hit.body.encrypted), keys));

  /**
   * An account ejabberd does not know, with a registered device, for tests that write the store
   * themselves and call a dispatcher's publish as ejabberd would.
   */
  async function storeOnlyUser(device: Record<string, unknown>) {
    const carol = `carol-${randomBytes(3).toString("hex")}@${ejabberd.domain}`;
    const dave = `dave-${randomBytes(3).toString("hex")}@${ejabberd.domain}`;
    const registered = await register(await h.token(carol), device);
    return { carol, dave, ...registered };
  }

  const writeStore = (...copies: ParsedCopy[]) =>
    appendBatch(
      h.store.db,
      { copies },
      { isLocal: (jid) => jid.endsWith(`@${ejabberd.domain}`), callRingTimeoutMs: 60_000 },
    );

  /** An iPhone that can be rung, and a call ringing its account now. */
  async function ringingDevice() {
    const alertToken = hexToken();
    const voipToken = hexToken();
    const { carol, dave, device } = await storeOnlyUser({
      platform: "apns",
      token: alertToken,
      voip_token: voipToken,
    });
    // Sent now: the copies' own clock runs in the past, where the call would have expired.
    const callId = `call-${randomBytes(3).toString("hex")}`;
    await writeStore(
      callSignal(dave, carol, { action: "propose", callId, media: [] }, { sentAt: new Date() }),
    );
    return { alertToken, voipToken, device, carol, dave };
  }

  /** Runs `fn` with a dispatcher of its own (by default with clients of the stand-ins). */
  async function withDispatcher<T>(
    fn: (dispatcher: PushDispatcher) => Promise<T>,
    options: Partial<DispatcherOptions> = {},
  ): Promise<T> {
    const senders = options.senders ?? (await createPushSenders(h.config.push));
    const dispatcher = new PushDispatcher({
      store: h.store,
      logger: createLogger("silent"),
      coalesceMs: 0,
      catchUpMs: 0,
      ...options,
      senders,
    });
    try {
      return await fn(dispatcher);
    } finally {
      dispatcher.close();
      senders.apns?.close();
    }
  }

  it("rings an offline iPhone once per call with a VoIP push, and alerts it with encrypted messages", async () => {
    const { alice, bob, token, bobClient, alertToken, voipToken, device, keys } =
      await sleepingIPhone();
    expect(device.jid).toBe(PUSH_DOMAIN);

    const sentAt = Date.now();
    await bobClient.send(propose(alice.jid, "call-1"));
    const [voip] = await waitFor(
      () => (hitsFor(voipToken).length > 0 ? hitsFor(voipToken) : null),
      {
        what: "VoIP push",
      },
    );
    const latencyMs = Date.now() - sentAt;
    expect(voip?.headers).toMatchObject({
      "apns-topic": `${APP}.voip`,
      "apns-push-type": "voip",
      "apns-priority": "10",
    });
    const call = (voip as ApnsHit).body.call as Record<string, unknown>;
    expect(call).toMatchObject({
      type: "call",
      call_id: "call-1",
      caller: bob.jid,
      media: ["audio"],
    });
    // Apple drops the push once the call stops ringing.
    expect(Number(voip?.headers["apns-expiration"])).toBe(
      Math.ceil(Date.parse(String(call.expires_at)) / 1000),
    );

    await bobClient.send(chat(alice.jid, "are you there?"));
    const alert = await waitFor(() => hitsFor(alertToken)[0], { what: "alert push" });
    expect(alert.headers).toMatchObject({
      "apns-topic": APP,
      "apns-push-type": "alert",
      "apns-priority": "10",
    });
    const aps = alert.body.aps as Record<string, unknown>;
    expect(aps["mutable-content"]).toBe(1);
    expect(JSON.stringify(alert.body)).not.toContain("are you there");
    const notice = decryptNotice(String(alert.body.encrypted), keys);
    expect(notice).toMatchObject({
      type: "message",
      account: alice.jid,
      peer: bob.jid,
      sender: bob.jid,
      preview: "are you there?",
      preview_truncated: false,
      unread_count: 1,
    });

    // The extension's one request: the push's position is a valid cursor that already covers
    // the message, while the call still rings.
    const res = await h.get(`/v1/sync?since=${notice.position}`, token);
    expect(res.status).toBe(200);
    const synced = await expectContract<{
      calls: { id: string; state: string }[];
      conversations: unknown[];
    }>(res, "GET", "/v1/sync");
    expect(synced.calls.map((c) => [c.id, c.state])).toEqual([["call-1", "proposed"]]);
    expect(synced.conversations).toEqual([]);

    // Neither the message nor a retraction rings the phone again.
    await bobClient.send(
      xml(
        "message",
        { to: alice.jid, type: "chat" },
        xml("retract", { xmlns: JMI, id: "call-1" }),
        xml("store", { xmlns: "urn:xmpp:hints" }),
      ),
    );
    await bobClient.send(chat(alice.jid, "call me back"));
    await waitFor(
      () =>
        hitsFor(alertToken).some(
          (hit) => decryptNotice(String(hit.body.encrypted), keys).preview === "call me back",
        ),
      { what: "second alert" },
    );
    expect(hitsFor(voipToken)).toHaveLength(1);
    expect(apns.refused).toEqual([]);
    // The ring follows the publish at once: a loose bound, as the machine is shared.
    expect(latencyMs).toBeLessThan(10_000);
  });

  it("rings and alerts a phone for stanzas ingest stored only after ejabberd's publishes were answered", async () => {
    const { alice, bob, bobClient, alertToken, voipToken, keys } = await sleepingIPhone();
    await ingest.stop();
    try {
      await bobClient.send(propose(alice.jid, "while-away"));
      await bobClient.send(chat(alice.jid, "sent while ingest was away"));
      // Each publish waits a second for ingest, then is answered with nothing found yet.
      await new Promise((resolve) => setTimeout(resolve, 3000));
      expect([hitsFor(voipToken), hitsFor(alertToken)]).toEqual([[], []]);
    } finally {
      ingest = await startIngest(h.store, ejabberd, env);
    }
    // Catch-up stores both; no publish comes again, yet the phone rings and is alerted.
    const [voip] = await waitFor(
      () => (hitsFor(voipToken).length > 0 ? hitsFor(voipToken) : null),
      {
        what: "VoIP push once ingest caught up",
      },
    );
    expect(voip?.body.call).toMatchObject({ call_id: "while-away", caller: bob.jid });
    const [notice] = await waitFor(
      () => (hitsFor(alertToken).length > 0 ? alertsTo(alertToken, keys) : null),
      { what: "alert once ingest caught up" },
    );
    expect(notice).toMatchObject({ peer: bob.jid, preview: "sent while ingest was away" });
  });

  it("coalesces a burst into at most one alert per window, the last carrying the newest message", async () => {
    const { alice, bobClient, token } = await pushUser();
    const alertToken = hexToken();
    const { device, keys } = await register(token, { platform: "apns", token: alertToken });
    await enableAndLeave(alice, device);

    const started = Date.now();
    for (let i = 1; i <= 8; i++) await bobClient.send(chat(alice.jid, `burst ${i}`));
    await waitFor(
      () =>
        hitsFor(alertToken).some(
          (hit) => decryptNotice(String(hit.body.encrypted), keys).preview === "burst 8",
        ),
      { what: "an alert with the last message" },
    );
    const elapsed = Date.now() - started;
    const alerts = hitsFor(alertToken);
    expect(alerts.length).toBeLessThanOrEqual(Math.ceil(elapsed / COALESCE_MS) + 1);
    expect(alerts.length).toBeLessThan(8);
  });

  it("alerts with the newest message by send time, as it stands now, whatever order ingest wrote them in", async () => {
    const alertToken = hexToken();
    const { carol, dave, device, keys } = await storeOnlyUser({
      platform: "apns",
      token: alertToken,
    });
    const [first, second, third] = [nextTime(), nextTime(), nextTime()];
    const message = (id: string, body: string, sentAt: Date) =>
      copyOf({ kind: "message", from: dave, to: carol, messageId: id, body }, { sentAt });
    // Live copies first; then catch-up writes an older message behind them. The newest was
    // taken back, and the one before it edited.
    await writeStore(message("m2", "second", second), message("m3", "third", third));
    await writeStore(message("m1", "first", first));
    await writeStore(retract(dave, carol, "m3"), edit(dave, carol, "m2", "second, edited"));

    await withDispatcher(async (dispatcher) => {
      expect(await dispatcher.publish(device.node, device.secret)).toEqual({ ok: true });
    });
    expect(alertsTo(alertToken, keys)).toMatchObject([
      { message_id: "m2", preview: "second, edited" },
    ]);
  });

  it("alerts no message the account has read: a publish for a reaction to it stays silent", async () => {
    const alertToken = hexToken();
    const { carol, dave, device, keys } = await storeOnlyUser({
      platform: "apns",
      token: alertToken,
    });
    const message = (from: string, to: string, id: string, body: string) =>
      copyOf({ kind: "message", from, to, messageId: id, body });
    // A chat while the app was open: dave's message, carol's answer (she read it).
    await writeStore(
      message(dave, carol, "d1", "are you there?"),
      message(carol, dave, "c1", "yes"),
    );

    await withDispatcher(async (dispatcher) => {
      // The phone sleeps; dave reacts to her answer and ejabberd publishes for it.
      await writeStore(react(dave, carol, "c1", ["👍"]));
      expect(await dispatcher.publish(device.node, device.secret)).toEqual({ ok: true });
      expect(hitsFor(alertToken)).toEqual([]);
      // A new message is alerted.
      await writeStore(message(dave, carol, "d2", "call me"));
      expect(await dispatcher.publish(device.node, device.secret)).toEqual({ ok: true });
    });
    expect(alertsTo(alertToken, keys)).toMatchObject([{ message_id: "d2", preview: "call me" }]);
  });

  it("alerts a new device about what comes after it, and each message once though its id comes again", async () => {
    const carol = `carol-${randomBytes(3).toString("hex")}@${ejabberd.domain}`;
    const dave = `dave-${randomBytes(3).toString("hex")}@${ejabberd.domain}`;
    const token = await h.token(carol);
    const message = (id: string, body: string, sentAt = nextTime()) =>
      copyOf({ kind: "message", from: dave, to: carol, messageId: id, body }, { sentAt });
    // Unread, but from before the phone registered: the app was open then.
    await writeStore(message("old", "from before"));
    const alertToken = hexToken();
    const { device, keys } = await register(token, { platform: "apns", token: alertToken });
    const early = nextTime();
    await withDispatcher(async (dispatcher) => {
      expect(await dispatcher.publish(device.node, device.secret)).toEqual({ ok: true });
      expect(hitsFor(alertToken)).toEqual([]);
      // Nothing to alert: the next publish starts after what this one looked at.
      const [row] = await h.store.db
        .select({ alerted: pushDevices.alertedSeq, last: accounts.lastSeq })
        .from(pushDevices)
        .innerJoin(accounts, eq(accounts.id, pushDevices.accountId))
        .where(eq(pushDevices.id, device.id));
      expect(row?.alerted).toBe(row?.last);

      await writeStore(message("x", "new"));
      expect(await dispatcher.publish(device.node, device.secret)).toEqual({ ok: true });
      // Catch-up writes an older message with the same id: the stored one is kept, and
      // already alerted.
      await writeStore(message("x", "older, same id", early));
      expect(await dispatcher.publish(device.node, device.secret)).toEqual({ ok: true });
      // The app registers its token again (it is open): what came before is not alerted.
      await writeStore(message("y", "while the app was open"));
      const again = await register(token, { platform: "apns", token: alertToken });
      expect(again.device.id).toBe(device.id);
      expect(await dispatcher.publish(device.node, again.device.secret)).toEqual({ ok: true });
    });
    expect(hitsFor(alertToken)).toHaveLength(1);
    expect(alertsTo(alertToken, keys)).toMatchObject([{ message_id: "x", preview: "new" }]);
  });

  it("does the same over FCM: a HIGH-priority call message, then encrypted data-only alerts", async () => {
    const { alice, bob, bobClient, token } = await pushUser();
    const fcmToken = `fcm:${randomBytes(40).toString("base64url")}`;
    const { device, keys } = await register(token, { platform: "fcm", token: fcmToken });
    await enableAndLeave(alice, device);
    const mine = () => fcm.hits.filter((hit) => hit.message.token === fcmToken);

    await bobClient.send(propose(alice.jid, "fcm-call"));
    const ring = await waitFor(() => mine()[0], { what: "FCM call push" });
    expect(ring.message.android.priority).toBe("HIGH");
    expect(ring.message.android.collapse_key).toBe("fcm-call");
    const ttl = Number(/^(\d+)s$/.exec(ring.message.android.ttl ?? "")?.[1]);
    expect(ttl).toBeGreaterThan(50);
    expect(ttl).toBeLessThanOrEqual(60);
    expect(ring.message.data).toMatchObject({
      type: "call",
      call_id: "fcm-call",
      caller: bob.jid,
      media: "audio",
    });

    await bobClient.send(chat(alice.jid, "ping over FCM"));
    const alert = await waitFor(() => mine().find((hit) => hit.message.data.type === "message"), {
      what: "FCM alert",
    });
    expect(Object.keys(alert.message.data).sort()).toEqual(["encrypted", "type"]);
    expect(alert.message.android.priority).toBe("HIGH");
    expect(decryptNotice(alert.message.data.encrypted as string, keys)).toMatchObject({
      preview: "ping over FCM",
      peer: bob.jid,
    });
    expect(mine().filter((hit) => hit.message.data.type === "call")).toHaveLength(1);
    // One OAuth exchange serves every send.
    expect(fcm.stats.tokenRequests).toBe(1);
    expect(fcm.refused).toEqual([]);
  });

  it("disables an FCM device on FCM's own word on its token only, never on a bare 404 or a payload error", async () => {
    const FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError";
    const BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest";
    const gone = { ok: false, type: "cancel", condition: "item-not-found" };
    const kept = { ok: false, type: "wait", condition: "internal-server-error" };
    const cases = [
      {
        what: "UNREGISTERED",
        answer: {
          status: 404,
          body: {
            error: {
              code: 404,
              message: "Requested entity was not found.",
              status: "NOT_FOUND",
              details: [{ "@type": FCM_ERROR, errorCode: "UNREGISTERED" }],
            },
          },
        },
        publish: gone,
        disabled: "unregistered",
      },
      {
        what: "a proxy's 404 page",
        answer: { status: 404, body: "<html><body>Not Found</body></html>" },
        publish: kept,
        disabled: null,
      },
      {
        what: "a 404 NOT_FOUND without FCM's reason (a wrong project)",
        answer: {
          status: 404,
          body: {
            error: { code: 404, message: "Requested entity was not found.", status: "NOT_FOUND" },
          },
        },
        publish: kept,
        disabled: null,
      },
      {
        what: "INVALID_ARGUMENT for the token, as FCM's error docs show it",
        answer: {
          status: 400,
          body: {
            error: {
              code: 400,
              message: "The registration token is not a valid FCM registration token",
              status: "INVALID_ARGUMENT",
              details: [{ "@type": FCM_ERROR, errorCode: "INVALID_ARGUMENT" }],
            },
          },
        },
        publish: gone,
        disabled: "INVALID_ARGUMENT",
      },
      {
        what: "INVALID_ARGUMENT with a field violation on message.token",
        answer: {
          status: 400,
          body: {
            error: {
              code: 400,
              message: "Invalid value at 'message.token'",
              status: "INVALID_ARGUMENT",
              details: [{ "@type": BAD_REQUEST, fieldViolations: [{ field: "message.token" }] }],
            },
          },
        },
        publish: gone,
        disabled: "INVALID_ARGUMENT",
      },
      {
        what: "INVALID_ARGUMENT for the payload",
        answer: {
          status: 400,
          body: {
            error: {
              code: 400,
              message: "Invalid value at 'message.data[0].value' (TYPE_STRING), 12",
              status: "INVALID_ARGUMENT",
              details: [
                { "@type": BAD_REQUEST, fieldViolations: [{ field: "message.data[0].value" }] },
              ],
            },
          },
        },
        publish: kept,
        disabled: null,
      },
    ];
    try {
      for (const c of cases) {
        const fcmToken = `fcm:${randomBytes(16).toString("hex")}`;
        const { carol, dave, device } = await storeOnlyUser({ platform: "fcm", token: fcmToken });
        await writeStore(copyOf({ kind: "message", from: dave, to: carol, body: "hi" }));
        fcm.state.answer = (hit) => (hit.message.token === fcmToken ? c.answer : undefined);
        const answer = await withDispatcher((dispatcher) =>
          dispatcher.publish(device.node, device.secret),
        );
        expect(answer, c.what).toMatchObject(c.publish);
        const [row] = await h.store.db
          .select({ reason: pushDevices.disabledReason })
          .from(pushDevices)
          .where(eq(pushDevices.id, device.id));
        expect(row?.reason ?? null, c.what).toBe(c.disabled);
      }
    } finally {
      fcm.state.answer = () => undefined;
    }
  });

  it("disables a device APNs calls Unregistered (410), and ejabberd drops its registration", async () => {
    const { alice, bobClient, token } = await pushUser();
    const alertToken = hexToken();
    const { device } = await register(token, { platform: "apns", token: alertToken });
    await enableAndLeave(alice, device);
    apns.state.answer = (hit) =>
      hit.token === alertToken
        ? { status: 410, body: { reason: "Unregistered", timestamp: Date.now() } }
        : undefined;

    await bobClient.send(chat(alice.jid, "anyone?"));
    const listed = await waitFor(
      async () => {
        const res = await h.get("/v1/push/devices", token);
        const body = await expectContract<{ devices: Device[] }>(res, "GET", "/v1/push/devices");
        return body.devices[0]?.disabled_at ? body.devices : null;
      },
      { what: "device disabled" },
    );
    expect(listed[0]?.disabled_reason).toBe("unregistered");
    const attempts = apns.requests.filter((r) => r.token === alertToken).length;
    expect(attempts).toBe(1);

    // ejabberd got item-not-found and removed the push session: nothing more is published.
    await bobClient.send(chat(alice.jid, "hello?"));
    const published = outcomes.length;
    await new Promise((r) => setTimeout(r, 1500));
    expect(apns.requests.filter((r) => r.token === alertToken)).toHaveLength(attempts);
    expect(outcomes.length).toBe(published);
    apns.state.answer = () => undefined;
  });

  it("backs off on 429 but keeps ejabberd's registration: a later message still arrives", async () => {
    const { alice, bobClient, token } = await pushUser();
    const alertToken = hexToken();
    const { device, keys } = await register(token, { platform: "apns", token: alertToken });
    await enableAndLeave(alice, device);
    let throttled = 0;
    // Both times as the stand-in sees the requests: a poll of the test could notice late.
    let throttledAt = 0;
    let retriedAt = 0;
    apns.state.answer = (hit) => {
      if (hit.token !== alertToken) return undefined;
      if (throttled > 0) {
        retriedAt ||= Date.now();
        return undefined;
      }
      throttled++;
      throttledAt = Date.now();
      return { status: 429, body: { reason: "TooManyRequests" }, headers: { "retry-after": "1" } };
    };

    await bobClient.send(chat(alice.jid, "first"));
    await waitFor(() => throttled === 1, { what: "a 429" });
    // Within the back-off nothing is sent; the deferred push follows when it ends.
    await bobClient.send(chat(alice.jid, "second"));
    const hit = await waitFor(() => hitsFor(alertToken)[0], { what: "push after back-off" });
    expect(retriedAt - throttledAt).toBeGreaterThanOrEqual(990);
    expect(decryptNotice(String(hit.body.encrypted), keys).preview).toBe("second");

    // A message after the back-off is published by ejabberd (registration kept) and pushed.
    await bobClient.send(chat(alice.jid, "third"));
    await waitFor(
      () =>
        hitsFor(alertToken).some(
          (h2) => decryptNotice(String(h2.body.encrypted), keys).preview === "third",
        ),
      { what: "push for a later message" },
    );
    const res = await h.get("/v1/push/devices", token);
    const body = await expectContract<{ devices: Device[] }>(res, "GET", "/v1/push/devices");
    expect(body.devices[0]?.disabled_at).toBeNull();
    apns.state.answer = () => undefined;
  });

  it("backs off at least a second on a 429 whose Retry-After says 0, instead of sending again at once", async () => {
    const alertToken = hexToken();
    const { carol, dave, device } = await storeOnlyUser({ platform: "apns", token: alertToken });
    await writeStore(copyOf({ kind: "message", from: dave, to: carol, body: "hi" }));
    apns.state.answer = (hit) =>
      hit.token === alertToken
        ? { status: 429, body: { reason: "TooManyRequests" }, headers: { "retry-after": "0" } }
        : undefined;
    try {
      await withDispatcher(async (dispatcher) => {
        expect(await dispatcher.publish(device.node, device.secret)).toEqual({ ok: true });
        await new Promise((resolve) => setTimeout(resolve, 500));
        expect(apns.requests.filter((r) => r.token === alertToken)).toHaveLength(1);
      });
    } finally {
      apns.state.answer = () => undefined;
    }
  });

  it("rings an incoming call at once while the device's alerts are throttled", async () => {
    const alertToken = hexToken();
    const voipToken = hexToken();
    const { carol, dave, device } = await storeOnlyUser({
      platform: "apns",
      token: alertToken,
      voip_token: voipToken,
    });
    const alertTries = () => apns.requests.filter((r) => r.token === alertToken).length;
    await writeStore(copyOf({ kind: "message", from: dave, to: carol, body: "hi" }));
    // No Retry-After, as APNs sends it: the alert backs off for 30 s, far past a call's ring.
    apns.state.answer = (hit) =>
      hit.token === alertToken ? { status: 429, body: { reason: "TooManyRequests" } } : undefined;
    try {
      await withDispatcher(async (dispatcher) => {
        expect(await dispatcher.publish(device.node, device.secret)).toEqual({ ok: true });
        expect(alertTries()).toBe(1);
        const callId = `call-${randomBytes(3).toString("hex")}`;
        await writeStore(
          callSignal(dave, carol, { action: "propose", callId, media: [] }, { sentAt: new Date() }),
        );
        expect(await dispatcher.publish(device.node, device.secret)).toEqual({ ok: true });
        expect(
          hitsFor(voipToken).map((hit) => (hit.body.call as { call_id: string }).call_id),
        ).toEqual([callId]);
        expect(alertTries()).toBe(1);
      });
    } finally {
      apns.state.answer = () => undefined;
    }
  });

  it("alerts a message at once while the device's call pushes are throttled", async () => {
    const { alertToken, voipToken, device, carol, dave } = await ringingDevice();
    apns.state.answer = (hit) =>
      hit.token === voipToken ? { status: 429, body: { reason: "TooManyRequests" } } : undefined;
    try {
      await withDispatcher(async (dispatcher) => {
        expect(await dispatcher.publish(device.node, device.secret)).toEqual({ ok: true });
        await writeStore(copyOf({ kind: "message", from: dave, to: carol, body: "call me" }));
        expect(await dispatcher.publish(device.node, device.secret)).toEqual({ ok: true });
        expect(hitsFor(alertToken)).toHaveLength(1);
      });
    } finally {
      apns.state.answer = () => undefined;
    }
  });

  it("rings a device later when its VoIP push could not even be sent (its claim is released)", async () => {
    const { voipToken, device } = await ringingDevice();
    // A provider key that cannot sign ES256 (an RSA key given as APNS_KEY): the send throws.
    const broken = new ApnsClient({
      signer: new ApnsTokenSigner(
        googleKey.privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
        "KEYID12345",
        "TEAM123456",
      ),
      productionUrl: apns.url,
      sandboxUrl: apns.url,
      ca: apns.ca,
    });
    await withDispatcher(
      async (dispatcher) => {
        await expect(dispatcher.publish(device.node, device.secret)).rejects.toThrow();
      },
      { senders: { apns: broken, fcm: null } },
    );
    expect(hitsFor(voipToken)).toEqual([]);

    // Once the key is fixed, the next publish rings it.
    await withDispatcher(async (dispatcher) => {
      expect(await dispatcher.publish(device.node, device.secret)).toEqual({ ok: true });
    });
    expect(hitsFor(voipToken)).toHaveLength(1);
  });

  it("forgets which calls a device was rung for once it is deleted, and only its own", async () => {
    const mine = await ringingDevice();
    const other = await ringingDevice();
    await withDispatcher(async (dispatcher) => {
      for (const { device } of [mine, other]) {
        expect(await dispatcher.publish(device.node, device.secret)).toEqual({ ok: true });
      }
    });
    expect(hitsFor(mine.voipToken)).toHaveLength(1);
    const claims = (deviceId: string) =>
      h.store.db.$count(pushDeliveries, eq(pushDeliveries.deviceId, deviceId));
    expect(await claims(mine.device.id)).toBe(1);

    const res = await h.get(`/v1/push/devices/${mine.device.id}`, await h.token(mine.carol), {
      method: "DELETE",
    });
    expect(res.status).toBe(204);
    expect(await claims(mine.device.id)).toBe(0);
    expect(await claims(other.device.id)).toBe(1);
  });

  it("rings a device again after a 410 that came before it registered again", async () => {
    const { voipToken, device } = await ringingDevice();
    // The token's 410 is older than the device's registration: the device stays enabled.
    let gone = 0;
    apns.state.answer = (hit) => {
      if (hit.token !== voipToken || gone > 0) return undefined;
      gone++;
      return { status: 410, body: { reason: "Unregistered", timestamp: Date.now() - 3_600_000 } };
    };
    try {
      await withDispatcher(async (dispatcher) => {
        expect(await dispatcher.publish(device.node, device.secret)).toEqual({ ok: true });
        expect(gone).toBe(1);
        expect(await dispatcher.publish(device.node, device.secret)).toEqual({ ok: true });
      });
    } finally {
      apns.state.answer = () => undefined;
    }
    expect(hitsFor(voipToken)).toHaveLength(1);
  });

  it.each([
    [
      "410 Unregistered",
      () => ({ status: 410, body: { reason: "Unregistered", timestamp: Date.now() } }),
    ],
    ["400 BadDeviceToken", () => ({ status: 400, body: { reason: "BadDeviceToken" } })],
    [
      "400 DeviceTokenNotForTopic",
      () => ({ status: 400, body: { reason: "DeviceTokenNotForTopic" } }),
    ],
  ])(
    "drops only the VoIP token APNs answers %s for: the device's alerts go on",
    async (_, answer) => {
      const { alertToken, voipToken, device, carol, dave } = await ringingDevice();
      apns.state.answer = (hit) => (hit.token === voipToken ? answer() : undefined);
      try {
        await withDispatcher(async (dispatcher) => {
          // Success for ejabberd: it keeps the registration the alerts need.
          expect(await dispatcher.publish(device.node, device.secret)).toEqual({ ok: true });
          await writeStore(copyOf({ kind: "message", from: dave, to: carol, body: "missed you" }));
          expect(await dispatcher.publish(device.node, device.secret)).toEqual({ ok: true });
        });
      } finally {
        apns.state.answer = () => undefined;
      }
      expect(hitsFor(alertToken)).toHaveLength(1);
      // Rung no more, as a device registered without a VoIP token.
      expect(apns.requests.filter((r) => r.token === voipToken)).toHaveLength(1);
      const [row] = await h.store.db
        .select({ voipToken: pushDevices.voipToken, disabledAt: pushDevices.disabledAt })
        .from(pushDevices)
        .where(eq(pushDevices.id, device.id));
      expect(row).toEqual({ voipToken: null, disabledAt: null });
    },
  );

  it("rings a device again by itself while the call rings when APNs stayed unavailable", async () => {
    const { voipToken, device } = await ringingDevice();
    // Down for the publish's own three tries, up after.
    let refused = 0;
    apns.state.answer = (hit) => {
      if (hit.token !== voipToken || refused >= 3) return undefined;
      refused++;
      return { status: 503, body: { reason: "ServiceUnavailable" } };
    };
    try {
      await withDispatcher(
        async (dispatcher) => {
          expect(await dispatcher.publish(device.node, device.secret)).toMatchObject({
            ok: false,
            type: "wait",
          });
          expect(refused).toBe(3);
          // No other publish comes: the dispatcher tries again by itself.
          await waitFor(() => hitsFor(voipToken).length === 1, { what: "the VoIP push, later" });
        },
        { callRetryMs: 300 },
      );
    } finally {
      apns.state.answer = () => undefined;
    }
  });

  it("alerts a device again by itself, less and less often, when APNs stayed unavailable", async () => {
    const alertToken = hexToken();
    const { carol, dave, device, keys } = await storeOnlyUser({
      platform: "apns",
      token: alertToken,
    });
    await writeStore(copyOf({ kind: "message", from: dave, to: carol, body: "are you up?" }));
    // Down for the publish's own three tries and those of the first retry, up after; each try
    // timed as the stand-in sees it.
    const tries: number[] = [];
    apns.state.answer = (hit) => {
      if (hit.token !== alertToken) return undefined;
      tries.push(Date.now());
      return tries.length <= 6
        ? { status: 503, body: { reason: "ServiceUnavailable" } }
        : undefined;
    };
    try {
      await withDispatcher(
        async (dispatcher) => {
          expect(await dispatcher.publish(device.node, device.secret)).toMatchObject({
            ok: false,
            type: "wait",
          });
          expect(tries).toHaveLength(3);
          // No other publish comes: the dispatcher tries again by itself.
          await waitFor(() => hitsFor(alertToken).length === 1, { what: "the alert, later" });
        },
        { alertRetryMs: 300 },
      );
    } finally {
      apns.state.answer = () => undefined;
    }
    expect(alertsTo(alertToken, keys).map((n) => n.preview)).toEqual(["are you up?"]);
    expect(tries).toHaveLength(7);
    // The second retry waited twice as long as the first.
    expect((tries[3] ?? 0) - (tries[2] ?? 0)).toBeGreaterThanOrEqual(300);
    expect((tries[6] ?? 0) - (tries[5] ?? 0)).toBeGreaterThanOrEqual(600);
    // The alert stands for the message: the next publish does not send it again.
    await withDispatcher(async (dispatcher) => {
      expect(await dispatcher.publish(device.node, device.secret)).toEqual({ ok: true });
    });
    expect(hitsFor(alertToken)).toHaveLength(1);
  });

  it("stops trying an alert again once its message is read", async () => {
    const alertToken = hexToken();
    const { carol, dave, device } = await storeOnlyUser({ platform: "apns", token: alertToken });
    await writeStore(
      copyOf({ kind: "message", from: dave, to: carol, messageId: "m1", body: "still there?" }),
    );
    const tries = () => apns.requests.filter((r) => r.token === alertToken).length;
    apns.state.answer = (hit) =>
      hit.token === alertToken
        ? { status: 503, body: { reason: "ServiceUnavailable" } }
        : undefined;
    const alerted = async () => {
      const [row] = await h.store.db
        .select({ alerted: pushDevices.alertedSeq, last: accounts.lastSeq })
        .from(pushDevices)
        .innerJoin(accounts, eq(accounts.id, pushDevices.accountId))
        .where(eq(pushDevices.id, device.id));
      return row !== undefined && row.alerted === row.last;
    };
    try {
      await withDispatcher(
        async (dispatcher) => {
          expect(await dispatcher.publish(device.node, device.secret)).toMatchObject({
            ok: false,
            type: "wait",
          });
          await waitFor(() => tries() === 6, { what: "the first retry" });
          // Read on another device before the next retry: that retry finds nothing due.
          await writeStore(displayed(carol, dave, "m1"));
          await waitFor(alerted, { what: "the retry that finds the message read" });
          await new Promise((resolve) => setTimeout(resolve, 1500));
        },
        { alertRetryMs: 300 },
      );
    } finally {
      apns.state.answer = () => undefined;
    }
    expect(tries()).toBe(6);
    expect(hitsFor(alertToken)).toEqual([]);
  });

  it("retries a 5xx from APNs with back-off and delivers on the third try", async () => {
    const { alice, bobClient, token } = await pushUser();
    const alertToken = hexToken();
    const { device, keys } = await register(token, { platform: "apns", token: alertToken });
    await enableAndLeave(alice, device);
    let failures = 0;
    apns.state.answer = (hit) => {
      if (hit.token !== alertToken || failures >= 2) return undefined;
      failures++;
      return { status: 503, body: { reason: "ServiceUnavailable" } };
    };

    await bobClient.send(chat(alice.jid, "through the outage"));
    const hit = await waitFor(() => hitsFor(alertToken)[0], { what: "push after retries" });
    expect(decryptNotice(String(hit.body.encrypted), keys).preview).toBe("through the outage");
    expect(apns.requests.filter((r) => r.token === alertToken)).toHaveLength(3);
    apns.state.answer = () => undefined;
  });

  it("connects afresh after a request APNs never answered, rather than wait on that connection again", async () => {
    const alertToken = hexToken();
    const client = new ApnsClient({
      signer: new ApnsTokenSigner(
        apnsKey.privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
        "KEYID12345",
        "TEAM123456",
      ),
      productionUrl: apns.url,
      sandboxUrl: apns.url,
      ca: apns.ca,
      timeoutMs: 300,
    });
    const push = {
      environment: "sandbox",
      token: alertToken,
      topic: APP,
      pushType: "alert",
      priority: 10,
      payload: "{}",
    } as const;
    // The connection's flow is gone (a NAT forgot it): no answer, no reset, ever.
    apns.state.silentSessions = 1;
    const sessions = apns.stats.sessions;
    try {
      expect(await client.send(push)).toMatchObject({ ok: false, kind: "unavailable" });
      expect(await client.send(push)).toEqual({ ok: true });
    } finally {
      client.close();
      apns.state.silentSessions = 0;
    }
    expect(apns.stats.sessions - sessions).toBe(2);
    expect(hitsFor(alertToken)).toHaveLength(1);
  });

  describe("REST /v1/push/devices", () => {
    const fresh = () => h.token(`dora-${randomBytes(3).toString("hex")}@${ejabberd.domain}`);
    const post = (token: string, body: unknown) =>
      h.get("/v1/push/devices", token, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    const listDevices = async (token: string) =>
      (
        await expectContract<{
          devices: (Device & { token: string; voip_token: string | null })[];
        }>(await h.get("/v1/push/devices", token), "GET", "/v1/push/devices")
      ).devices;

    it("re-registering a token updates the device: same id and node, a new secret, enabled again", async () => {
      const token = await fresh();
      const apnsToken = hexToken();
      const first = await register(token, { platform: "apns", token: apnsToken });
      const again = await register(token, {
        platform: "apns",
        token: apnsToken,
        voip_token: hexToken(),
      });
      expect(again.device.id).toBe(first.device.id);
      expect(again.device.node).toBe(first.device.node);
      expect(again.device.secret).not.toBe(first.device.secret);
      const res = await h.get("/v1/push/devices", token);
      const text = await res.clone().text();
      const devices = await listDevices(token);
      expect(devices.map((d) => [d.id, d.token])).toEqual([[first.device.id, apnsToken]]);
      // Secrets are shown once, at registration, and never stored in clear.
      expect(text).not.toContain(first.device.secret);
      expect(text).not.toContain(again.device.secret);
      expect(text).not.toContain('"secret"');
    });

    it.each([
      ["an unknown platform", { platform: "mpns" }, "platform"],
      [
        "a p256dh of the wrong length",
        { encryption: { p256dh: "AAAA", auth: "A".repeat(22) } },
        "encryption.p256dh",
      ],
      [
        "a p256dh of the right shape that is no point on the curve",
        {
          encryption: {
            p256dh: Buffer.concat([Buffer.from([4]), Buffer.alloc(64)]).toString("base64url"),
            auth: "A".repeat(22),
          },
        },
        "encryption.p256dh",
      ],
      [
        "an auth secret of the wrong length",
        { encryption: { p256dh: deviceKeys().encryption.p256dh, auth: "AAAA" } },
        "encryption.auth",
      ],
      ["a token with spaces", { token: "ab cd" }, "token"],
      ["an APNs token that is not hex", { token: "zz".repeat(32) }, "token"],
      ["an APNs token of an odd number of hex digits", { token: hexToken().slice(1) }, "token"],
      ["an APNs token longer than 100 bytes", { token: "ab".repeat(101) }, "token"],
      ["a VoIP token that is not hex", { voip_token: "not-a-pushkit-token" }, "voip_token"],
      [
        "a VoIP token for FCM, which rings through its one token",
        { platform: "fcm", token: `fcm:${hexToken()}`, voip_token: hexToken() },
        "voip_token",
      ],
      ["an unknown field", { colour: "red" }, "body"],
    ])("refuses %s with 400 naming the field", async (_, change, field) => {
      const token = await fresh();
      const res = await post(token, {
        platform: "apns",
        token: hexToken(),
        app_id: APP,
        encryption: deviceKeys().encryption,
        ...change,
      });
      expect(res.status).toBe(400);
      const problem = await expectContract<{ code: string; detail: string }>(
        res,
        "POST",
        "/v1/push/devices",
      );
      expect(problem.code).toBe("validation_failed");
      expect(problem.detail.startsWith(`${field}:`) || problem.detail.includes(`${field}:`)).toBe(
        true,
      );
    });

    it("takes APNs tokens in either case as one device, stored lower-case, and FCM without a VoIP token", async () => {
      const token = await fresh();
      const apnsToken = hexToken();
      const voipToken = hexToken();
      const upper = await register(token, {
        platform: "apns",
        token: apnsToken.toUpperCase(),
        voip_token: voipToken.toUpperCase(),
      });
      expect((await listDevices(token)).map((d) => [d.id, d.token, d.voip_token])).toEqual([
        [upper.device.id, apnsToken, voipToken],
      ]);
      const lower = await register(token, {
        platform: "apns",
        token: apnsToken,
        voip_token: voipToken,
      });
      expect(lower.device.id).toBe(upper.device.id);
      // A token as long as Apple may yet make them.
      const longer = await register(token, { platform: "apns", token: "0A".repeat(100) });
      const fcmToken = `fcm:${hexToken()}`;
      const android = await register(token, {
        platform: "fcm",
        token: fcmToken,
        voip_token: null,
      });
      const listed = await listDevices(token);
      expect(new Set(listed.map((d) => JSON.stringify([d.id, d.token, d.voip_token])))).toEqual(
        new Set([
          JSON.stringify([android.device.id, fcmToken, null]),
          JSON.stringify([longer.device.id, "0a".repeat(100), null]),
          JSON.stringify([upper.device.id, apnsToken, voipToken]),
        ]),
      );
    });

    it("deletes the caller's own device; another account's id is a 404 like an unknown one", async () => {
      const mine = await fresh();
      const theirs = await fresh();
      const { device } = await register(mine, {
        platform: "fcm",
        token: `fcm:${randomBytes(8).toString("hex")}`,
      });

      const other = await h.get(`/v1/push/devices/${device.id}`, theirs, { method: "DELETE" });
      expect(other.status).toBe(404);
      expect(
        (await expectContract<{ code: string }>(other, "DELETE", `/v1/push/devices/${device.id}`))
          .code,
      ).toBe("not_found");
      expect(await listDevices(theirs)).toEqual([]);
      expect((await listDevices(mine)).map((d) => d.id)).toEqual([device.id]);

      const res = await h.get(`/v1/push/devices/${device.id}`, mine, { method: "DELETE" });
      expect(res.status).toBe(204);
      await expectContract(res, "DELETE", `/v1/push/devices/${device.id}`);
      expect(await listDevices(mine)).toEqual([]);
      const again = await h.get(`/v1/push/devices/${device.id}`, mine, { method: "DELETE" });
      expect(again.status).toBe(404);
      await expectContract(again, "DELETE", `/v1/push/devices/${device.id}`);
    });

    it.each([
      ["POST", "/v1/push/devices"],
      ["GET", "/v1/push/devices"],
      ["DELETE", "/v1/push/devices/dev_x"],
    ])("%s %s needs a valid token", async (method, path) => {
      for (const headers of [{}, { authorization: "Bearer sst_unknown" }] as Record<
        string,
        string
      >[]) {
        const res = await h.app.request(path, { method, headers });
        expect(res.status).toBe(401);
        await expectContract(res, method, path);
      }
    });
  });

  describe("the publish handler", () => {
    const publishIq = (from: string, node: string, secret: string) =>
      xml(
        "iq",
        { type: "set", from, to: PUSH_DOMAIN, id: "p1" },
        xml(
          "pubsub",
          { xmlns: NS_PUBSUB },
          xml(
            "publish",
            { node },
            xml("item", {}, xml("notification", { xmlns: "urn:xmpp:push:0" })),
          ),
          xml(
            "publish-options",
            {},
            xml(
              "x",
              { xmlns: "jabber:x:data", type: "submit" },
              xml(
                "field",
                { var: "FORM_TYPE" },
                xml("value", {}, "http://jabber.org/protocol/pubsub#publish-options"),
              ),
              xml("field", { var: "secret" }, xml("value", {}, secret)),
            ),
          ),
        ),
      );

    it("refuses a wrong secret with forbidden, an unknown node with item-not-found, and anyone but the server", async () => {
      const token = await h.token(`carol-${randomBytes(3).toString("hex")}@${ejabberd.domain}`);
      const { device } = await register(token, { platform: "apns", token: hexToken() });
      const options = {
        dispatcher: new PushDispatcher({
          store: h.store,
          logger: createLogger("silent"),
          senders: { apns: null, fcm: null },
          coalesceMs: COALESCE_MS,
          catchUpMs: 0,
        }),
        serverDomains: new Set([ejabberd.domain]),
      };
      expect(
        await handlePublishIq(publishIq(ejabberd.domain, device.node, "wrong"), options),
      ).toEqual({
        ok: false,
        type: "auth",
        condition: "forbidden",
        text: "wrong secret",
      });
      expect(
        await handlePublishIq(publishIq(ejabberd.domain, "no-such-node", device.secret), options),
      ).toMatchObject({
        ok: false,
        type: "cancel",
        condition: "item-not-found",
      });
      expect(
        await handlePublishIq(
          publishIq(`mallory@${ejabberd.domain}`, device.node, device.secret),
          options,
        ),
      ).toMatchObject({ ok: false, type: "auth", condition: "forbidden" });
      // The right secret with nothing new to push: success, so ejabberd keeps the registration.
      expect(
        await handlePublishIq(publishIq(ejabberd.domain, device.node, device.secret), options),
      ).toEqual({
        ok: true,
      });
    });
  });
});
