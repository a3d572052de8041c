import { type Client, xml } from "@xmpp/client";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { accounts } from "../../src/store/schema/accounts.js";
import { events } from "../../src/store/schema/events.js";
import { expectContract } from "../helpers/contract.js";
import { api, connectUser, createUser, type TestUser } from "../helpers/ejabberd.js";
import { createHarness, type Harness } from "../helpers/harness.js";
import { ingestEnv, type RunningIngest, startIngest } from "../helpers/ingest.js";
import { EMPTY_MIRROR, mirrorRows } from "../helpers/mirror.js";
import { waitFor } from "../helpers/wait.js";

const ejabberd = inject("ejabberd");

interface SyncJson {
  conversations: { peer: string; messages: { id: string; body: string | null }[] }[];
}

const chat = (to: string, id: string, text: string) =>
  xml("message", { to, id, type: "chat" }, xml("body", {}, text));

describe("an account removed from ejabberd", () => {
  let h: Harness;
  let env: Record<string, string>;
  let ingest: RunningIngest | null = null;
  const clients: Client[] = [];

  beforeAll(async () => {
    env = ingestEnv(ejabberd);
    h = await createHarness({ env });
    ingest = await startIngest(h.store, ejabberd, env);
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.stop().catch(() => {})));
    await ingest?.stop();
    await h?.close();
  });

  async function online(user: TestUser): Promise<Client> {
    const c = await connectUser(ejabberd, user);
    clients.push(c);
    return c;
  }
  async function offline(c: Client): Promise<void> {
    clients.splice(clients.indexOf(c), 1);
    await c.stop();
  }

  /** A token the way a phone gets one: a password login checked by ejabberd. */
  async function login(user: TestUser): Promise<string> {
    const res = await h.app.request("/v1/tokens", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jid: user.jid, password: user.password, label: "phone" }),
    });
    expect(res.status).toBe(201);
    return (await expectContract<{ token: string }>(res, "POST", "/v1/tokens")).token;
  }

  async function registerDevice(token: string): Promise<void> {
    const res = await h.get("/v1/push/devices", token, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        platform: "fcm",
        token: `fcm-${Math.random().toString(36).slice(2)}`,
        app_id: "org.example.chat",
        environment: "production",
        encryption: {
          // A P-256 public point is all the route checks; no push is sent here.
          p256dh:
            "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
          auth: "BTBZMqHH6r4Tts7J_aSIgg",
        },
      }),
    });
    expect(res.status, await res.clone().text()).toBe(201);
  }

  async function sync(token: string): Promise<SyncJson> {
    const res = await h.get("/v1/sync", token);
    expect(res.status).toBe(200);
    return expectContract<SyncJson>(res, "GET", "/v1/sync");
  }
  const bodiesOf = (view: SyncJson) =>
    view.conversations.flatMap((c) => c.messages.map((m) => m.body)).sort();

  async function accountId(jid: string): Promise<number> {
    const [row] = await h.store.db.select().from(accounts).where(eq(accounts.jid, jid));
    if (!row) throw new Error(`no account ${jid}`);
    return row.id;
  }
  /** Rows syncside holds for the account, table by table. */
  async function mirrorOf(jid: string) {
    return mirrorRows(h.store.db, await accountId(jid));
  }

  /** alice with a token, a push device and a conversation with bob, all mirrored. */
  async function aliceWithMirror() {
    const alice = await createUser(ejabberd, "alice");
    const bob = await createUser(ejabberd, "bob");
    const a = await online(alice);
    const b = await online(bob);
    const token = await login(alice);
    await registerDevice(token);
    await a.send(chat(bob.jid, "old-1", "old from alice"));
    await b.send(chat(alice.jid, "old-2", "old from bob"));
    await waitFor(async () => bodiesOf(await sync(token)).length === 2, { what: "old mirrored" });
    return { alice, bob, a, b, token };
  }

  /** The same JID registered again by someone else, with a password of their own. */
  async function registerAgain(alice: TestUser): Promise<TestUser> {
    const again = { ...alice, password: `${alice.password}-new` };
    await api(ejabberd, "register", {
      user: alice.username,
      host: ejabberd.domain,
      password: again.password,
    });
    return again;
  }

  it("erases its mirror, tokens and devices; the JID registered again starts afresh", async () => {
    const { alice, bob, a, b, token } = await aliceWithMirror();
    await offline(a);

    await api(ejabberd, "unregister", { user: alice.username, host: ejabberd.domain });

    await waitFor(async () => (await h.get("/v1/sync", token)).status === 401, {
      what: "the removed account's token refused",
    });
    expect(await mirrorOf(alice.jid)).toEqual(EMPTY_MIRROR);
    // bob's own conversation with alice is bob's data.
    expect(await h.store.db.$count(events)).toBeGreaterThan(0);

    const again = await registerAgain(alice);
    const a2 = await online(again);
    await b.send(chat(alice.jid, "new-1", "new from bob"));
    await a2.send(chat(bob.jid, "new-2", "new from the new alice"));
    const fresh = await login(again);
    await waitFor(async () => bodiesOf(await sync(fresh)).length === 2, { what: "new mirrored" });
    expect(bodiesOf(await sync(fresh))).toEqual(["new from bob", "new from the new alice"]);
    expect((await h.get("/v1/sync", token)).status).toBe(401);

    // The notice read again from the archive (a restart's look-back) erases nothing new.
    await ingest?.stop();
    ingest = await startIngest(h.store, ejabberd, env);
    expect(bodiesOf(await sync(fresh))).toEqual(["new from bob", "new from the new alice"]);
    expect((await mirrorOf(alice.jid)).tokens).toBe(1);
    void bob;
  });

  it("does the same from the archive when syncside was stopped during the removal", async () => {
    const { alice, bob, a, b, token } = await aliceWithMirror();
    await ingest?.stop();
    ingest = null;

    // Copies ingest reads on catch-up, around the notice: before it alice's, after it the new owner's.
    await a.send(chat(bob.jid, "late-old", "sent while syncside was away"));
    await offline(a);
    await api(ejabberd, "unregister", { user: alice.username, host: ejabberd.domain });
    const again = await registerAgain(alice);
    const a2 = await online(again);
    await b.send(chat(alice.jid, "new-1", "new from bob"));
    await a2.send(chat(bob.jid, "new-2", "new from the new alice"));

    ingest = await startIngest(h.store, ejabberd, env);

    expect((await h.get("/v1/sync", token)).status).toBe(401);
    const fresh = await login(again);
    await waitFor(async () => bodiesOf(await sync(fresh)).length >= 2, { what: "new mirrored" });
    expect(bodiesOf(await sync(fresh))).toEqual(["new from bob", "new from the new alice"]);
    const mirror = await mirrorOf(alice.jid);
    expect(mirror).toMatchObject({ tokens: 1, pushDevices: 0, conversations: 1, messages: 2 });
  });
});
