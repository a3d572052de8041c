import { type Client, xml } from "@xmpp/client";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { expectContract } from "../helpers/contract.js";
import { connectUser, createUser, type TestUser } from "../helpers/ejabberd.js";
import { createHarness, type Harness } from "../helpers/harness.js";
import { ingestEnv, type RunningIngest, startIngest } from "../helpers/ingest.js";
import { waitFor } from "../helpers/wait.js";

const ejabberd = inject("ejabberd");
const JMI0 = "urn:xmpp:jingle-message:0";
const JMI1 = "urn:xmpp:jingle-message:1";
/** Short, so "nobody answered" can be observed; long enough for a sync right after the offer. */
const RING = "15s";
const RING_MS = 15_000;

interface CallJson {
  id: string;
  peer: string;
  direction: string;
  media: string[];
  state: string;
  proposed_at: string | null;
  expires_at: string | null;
  answered_by: string | null;
  answered_at: string | null;
  ended_at: string | null;
  end_reason: string | null;
}

const signal = (
  to: string,
  action: string,
  id: string,
  ns = JMI0,
  ...children: ReturnType<typeof xml>[]
) =>
  xml(
    "message",
    { to, type: "chat", id: `${action}-${id}-${Math.random()}` },
    xml(action, { xmlns: ns, id }, ...children),
  );
const audio = () => xml("description", { xmlns: "urn:xmpp:jingle:apps:rtp:1", media: "audio" });
const video = () => xml("description", { xmlns: "urn:xmpp:jingle:apps:rtp:1", media: "video" });
const reason = (condition: string) => xml("reason", { xmlns: "urn:xmpp:jingle:1" }, xml(condition));

describe("calls, end to end through ejabberd", () => {
  let h: Harness;
  let ingest: RunningIngest;
  const clients: Client[] = [];

  beforeAll(async () => {
    const env = { ...ingestEnv(ejabberd), CALL_RING_TIMEOUT: RING };
    h = await createHarness({ env });
    ingest = await startIngest(h.store, ejabberd, env);
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.stop().catch(() => {})));
    await ingest?.stop();
    await h?.close();
  });

  async function online(user: TestUser, resource = "phone") {
    const c = await connectUser(ejabberd, user, resource);
    clients.push(c);
    return c;
  }
  const tokens = new Map<string, Promise<string>>();
  async function get<T>(user: TestUser, path: string): Promise<T> {
    if (!tokens.has(user.jid)) tokens.set(user.jid, h.token(user.jid));
    const res = await h.get(path, await (tokens.get(user.jid) as Promise<string>));
    return expectContract<T>(res, "GET", path);
  }
  const sync = (user: TestUser) =>
    get<{ calls: CallJson[]; conversations: { peer: string; messages: unknown[] }[] }>(
      user,
      "/v1/sync?messages=100",
    );
  const callOf = (user: TestUser, id: string) =>
    get<CallJson & { history: { action: string }[]; duration_seconds: number | null }>(
      user,
      `/v1/calls/${encodeURIComponent(id)}`,
    );

  /** Waits until `user` sees call `id` in `state`. */
  const callIn = (user: TestUser, id: string, state: string) =>
    waitFor(async () => (await callOf(user, id).catch(() => null))?.state === state, {
      what: `${id} ${state} for ${user.jid}`,
    });

  it("lists a call offer first in the callee's sync, even after fifty messages", async () => {
    const [caller, callee] = [
      await createUser(ejabberd, "caller"),
      await createUser(ejabberd, "callee"),
    ];
    const a = await online(caller);
    await a.send(signal(callee.jid, "propose", "offer-1", JMI0, audio(), video()));
    for (let i = 0; i < 50; i++) {
      await a.send(
        xml(
          "message",
          { to: callee.jid, type: "chat", id: `after-${i}` },
          xml("body", {}, `msg ${i}`),
        ),
      );
    }
    await waitFor(async () => (await sync(callee)).conversations[0]?.messages.length === 50, {
      what: "50 messages ingested",
    });

    const body = await sync(callee);
    expect(body.calls).toHaveLength(1);
    const [call] = body.calls;
    expect(call).toMatchObject({
      id: "offer-1",
      peer: caller.jid,
      direction: "in",
      media: ["audio", "video"],
      state: "proposed",
    });
    expect(Date.parse(call?.expires_at ?? "") - Date.parse(call?.proposed_at ?? "")).toBe(RING_MS);
    // The caller's own phone does not list its outgoing offer as something ringing for it.
    expect((await sync(caller)).calls).toEqual([]);
  });

  it("is accepted on both sides with the answering device, and ends with a duration", async () => {
    const [caller, callee] = [
      await createUser(ejabberd, "caller"),
      await createUser(ejabberd, "callee"),
    ];
    const a = await online(caller);
    const deviceA = await online(callee, "device-a");
    await online(callee, "device-b");
    // A device rings once the offer has reached it: sent from two connections at once, ejabberd
    // could route the ringing first, and the call's history would rightly say so.
    const offered = new Promise<void>((resolve) =>
      deviceA.on("stanza", (stanza) => {
        if (stanza.getChild("propose", JMI0)?.attrs.id === "talk-1") resolve();
      }),
    );
    await a.send(signal(callee.jid, "propose", "talk-1", JMI0, audio()));
    await offered;
    await deviceA.send(signal(caller.jid, "ringing", "talk-1"));
    await waitFor(async () => (await sync(callee)).calls[0]?.state === "ringing", {
      what: "ringing",
    });
    await deviceA.send(signal(caller.jid, "proceed", "talk-1"));
    // Ingest writes each account in its own lane: one side may see the answer a moment first.
    for (const user of [caller, callee]) {
      await waitFor(async () => (await sync(user)).calls[0]?.state === "accepted", {
        what: `accepted for ${user.jid}`,
      });
    }
    for (const user of [caller, callee]) {
      expect((await sync(user)).calls).toMatchObject([
        { id: "talk-1", state: "accepted", answered_by: "device-a" },
      ]);
    }
    await a.send(signal(callee.jid, "finish", "talk-1", JMI0, reason("success")));
    await waitFor(async () => (await sync(callee)).calls.length === 0, { what: "call ended" });
    const ended = await callOf(callee, "talk-1");
    expect(ended).toMatchObject({
      state: "finished",
      end_reason: "finished",
      answered_by: "device-a",
    });
    expect(ended.duration_seconds).toBeGreaterThanOrEqual(0);
    expect(ended.history.map((s) => s.action)).toEqual(["propose", "ringing", "proceed", "finish"]);
  });

  it("ends as retracted, rejected, or missed when nobody answers in time", async () => {
    const [caller, callee] = [
      await createUser(ejabberd, "caller"),
      await createUser(ejabberd, "callee"),
    ];
    const a = await online(caller);
    const b = await online(callee);
    await a.send(signal(callee.jid, "propose", "hangup", JMI0, audio()));
    await a.send(signal(callee.jid, "retract", "hangup", JMI0, reason("cancel")));
    await b.send(
      xml(
        "message",
        { to: caller.jid, type: "chat", id: "x" },
        xml("body", {}, "sorry, missed it"),
      ),
    );
    await a.send(signal(callee.jid, "propose", "declined", JMI0, audio()));
    await b.send(signal(caller.jid, "reject", "declined", JMI0, reason("busy")));
    await a.send(signal(callee.jid, "propose", "unanswered", JMI0, audio()));

    // Sent from two connections, signals may be routed in another order than they were sent,
    // and each account is written in its own lane: wait for every fact asserted.
    await callIn(callee, "hangup", "retracted");
    await callIn(callee, "declined", "rejected");
    await callIn(callee, "unanswered", "proposed");
    await callIn(caller, "declined", "rejected");
    expect(await callOf(callee, "hangup")).toMatchObject({ end_reason: "retracted" });
    expect(await callOf(callee, "declined")).toMatchObject({ direction: "in" });
    expect(await callOf(caller, "declined")).toMatchObject({ direction: "out" });
    expect((await sync(callee)).calls.map((c) => c.id)).toEqual(["unanswered"]);
    await waitFor(async () => (await callOf(callee, "unanswered")).state === "missed", {
      timeoutMs: RING_MS + 10_000,
      what: "missed",
    });
    expect(await callOf(callee, "unanswered")).toMatchObject({ end_reason: "missed" });
    expect((await sync(callee)).calls).toEqual([]);
  });

  it("resolves simultaneous offers by the lower session id, and reads the :1 namespace with its accept", async () => {
    const [alice, bob] = [await createUser(ejabberd, "alice"), await createUser(ejabberd, "bob")];
    const a = await online(alice);
    const b = await online(bob);
    await a.send(signal(bob.jid, "propose", "zz-from-alice", JMI0, audio()));
    await b.send(signal(alice.jid, "propose", "aa-from-bob", JMI0, audio()));
    await waitFor(async () => (await sync(alice)).calls.length === 1, {
      what: "alice sees bob's offer",
    });
    expect((await sync(alice)).calls.map((c) => c.id)).toEqual(["aa-from-bob"]);
    // Bob's account is written in its own lane: once his own offer is in, alice's lost the tie-break.
    await callIn(bob, "aa-from-bob", "proposed");
    expect((await sync(bob)).calls).toEqual([]);

    await a.send(signal(bob.jid, "propose", "legacy", JMI1, audio()));
    await b.send(signal(alice.jid, "accept", "legacy", JMI1));
    await callIn(alice, "legacy", "accepted");
    await callIn(bob, "legacy", "accepted");
    expect(await callOf(bob, "legacy")).toMatchObject({
      state: "accepted",
      answered_by: "phone",
      direction: "in",
    });
  });

  it("never reports as ringing an offer that was already too old when ingest caught up", async () => {
    const [caller, callee] = [
      await createUser(ejabberd, "caller"),
      await createUser(ejabberd, "callee"),
    ];
    const a = await online(caller);
    await ingest.stop();
    await a.send(signal(callee.jid, "propose", "stale", JMI0, audio()));
    const sentAt = Date.now();
    await waitFor(() => Date.now() - sentAt > RING_MS + 500, {
      timeoutMs: RING_MS + 5000,
      what: "ring timeout to pass",
    });
    ingest = await startIngest(h.store, ejabberd, { CALL_RING_TIMEOUT: RING });
    await waitFor(async () => (await callOf(callee, "stale").catch(() => null))?.id === "stale", {
      what: "catch-up",
    });
    expect((await sync(callee)).calls).toEqual([]);
    expect(await callOf(callee, "stale")).toMatchObject({ state: "missed", end_reason: "missed" });
  });
});
