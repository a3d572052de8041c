import { type Client, xml } from "@xmpp/client";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { expectContract } from "../helpers/contract.js";
import { connectUser, createUser, type TestUser } from "../helpers/ejabberd.js";
import { createHarness, type Harness } from "../helpers/harness.js";
import { ingestEnv, type RunningIngest, startIngest } from "../helpers/ingest.js";
import { waitFor } from "../helpers/wait.js";

const ejabberd = inject("ejabberd");

interface MessageJson {
  id: string;
  stanza_id: string | null;
  direction: string;
  body: string | null;
  sent_at: string;
  edited_at: string | null;
  retracted: boolean;
  reactions: Record<string, string[]>;
  version: number;
}
interface SyncJson {
  position: string;
  caught_up: boolean;
  has_more: boolean;
  unread_total: number;
  calls: unknown[];
  conversations: {
    peer: string;
    version: number;
    unread_count: number;
    read_until: string | null;
    peer_read_until: string | null;
    last_message: MessageJson | null;
    messages: MessageJson[];
    messages_truncated: boolean;
  }[];
}

const chat = (to: string, id: string, ...children: ReturnType<typeof xml>[]) =>
  xml("message", { to, id, type: "chat" }, ...children);
const body = (text: string) => xml("body", {}, text);

describe("a phone's sync, end to end: XMPP clients → ejabberd → ingest → GET /v1/sync", () => {
  let h: Harness;
  let ingest: RunningIngest;
  let alice: TestUser;
  let bob: TestUser;
  let a: Client;
  let b: Client;
  const tokens = new Map<string, string>();

  beforeAll(async () => {
    const env = ingestEnv(ejabberd);
    h = await createHarness({ env });
    ingest = await startIngest(h.store, ejabberd, env);
    alice = await createUser(ejabberd, "alice");
    bob = await createUser(ejabberd, "bob");
    a = await connectUser(ejabberd, alice);
    b = await connectUser(ejabberd, bob);
    // Tokens the way a phone gets them: a password login checked by ejabberd itself.
    for (const user of [alice, bob]) {
      const res = await h.app.request("/v1/tokens", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ jid: user.jid, password: user.password, label: "e2e" }),
      });
      const issued = await expectContract<{ token: string }>(res, "POST", "/v1/tokens");
      tokens.set(user.jid, issued.token);
    }
  });
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await ingest?.stop();
    await h?.close();
  });

  async function sync(user: TestUser, query = ""): Promise<SyncJson> {
    const path = `/v1/sync${query}`;
    const res = await h.get(path, tokens.get(user.jid) ?? "");
    expect(res.status).toBe(200);
    return expectContract<SyncJson>(res, "GET", path);
  }

  it("shows each phone exactly its own view, then nothing new, then wakes a long-poll", async () => {
    const seen = (c: Client) => {
      const ids = new Set<string>();
      c.on("stanza", (s) => s.is("message") && s.attrs.id && ids.add(s.attrs.id));
      return (id: string) => waitFor(() => ids.has(id), { what: `delivery of ${id}` });
    };
    const bobSaw = seen(b);
    const aliceSaw = seen(a);

    await a.send(chat(bob.jid, "a1", body("lunch?")));
    await a.send(
      chat(bob.jid, "a2", body("at noon"), xml("markable", { xmlns: "urn:xmpp:chat-markers:0" })),
    );
    await a.send(
      chat(
        bob.jid,
        "a3",
        body("at 1pm"),
        xml("replace", { xmlns: "urn:xmpp:message-correct:0", id: "a2" }),
      ),
    );
    await bobSaw("a3");
    await b.send(chat(alice.jid, "b1", body("sure")));
    await b.send(
      chat(
        alice.jid,
        "r1",
        xml("reactions", { xmlns: "urn:xmpp:reactions:0", id: "a1" }, xml("reaction", {}, "🍕")),
      ),
    );
    await b.send(
      chat(alice.jid, "d1", xml("displayed", { xmlns: "urn:xmpp:chat-markers:0", id: "a2" })),
    );
    await b.send(chat(alice.jid, "b2", body("typo")));
    await b.send(
      chat(alice.jid, "x1", xml("retract", { xmlns: "urn:xmpp:message-retract:1", id: "b2" })),
    );
    await aliceSaw("x1");

    await waitFor(async () => (await sync(alice)).conversations[0]?.version === 8, {
      what: "alice's 8 events",
    });
    await waitFor(async () => (await sync(bob)).conversations[0]?.version === 8, {
      what: "bob's 8 events",
    });

    const aliceView = await sync(alice);
    expect(aliceView).toMatchObject({
      caught_up: true,
      has_more: false,
      unread_total: 1,
      calls: [],
    });
    expect(aliceView.conversations).toHaveLength(1);
    const withAlice = aliceView.conversations[0];
    expect(withAlice).toMatchObject({
      peer: bob.jid,
      version: 8,
      unread_count: 1,
      peer_read_until: "a2",
    });
    expect(
      withAlice?.messages.map((m) => [
        m.id,
        m.direction,
        m.body,
        !!m.edited_at,
        m.retracted,
        m.reactions,
      ]),
    ).toEqual([
      ["a1", "out", "lunch?", false, false, { [bob.jid]: ["🍕"] }],
      ["a2", "out", "at 1pm", true, false, {}],
      ["b1", "in", "sure", false, false, {}],
      ["b2", "in", null, false, true, {}],
    ]);
    expect(withAlice?.last_message).toMatchObject({ id: "b2", retracted: true });
    // alice's own messages carry her own archive id; a phone can continue in MAM from it.
    expect(withAlice?.messages[0]?.stanza_id).toMatch(/^\d+$/);

    const bobView = await sync(bob);
    expect(bobView.unread_total).toBe(0);
    expect(bobView.conversations[0]).toMatchObject({
      peer: alice.jid,
      unread_count: 0,
      read_until: "a2",
    });
    expect(bobView.conversations[0]?.messages.map((m) => [m.id, m.direction, m.body])).toEqual([
      ["a1", "in", "lunch?"],
      ["a2", "in", "at 1pm"],
      ["b1", "out", "sure"],
      ["b2", "out", null],
    ]);

    // Synced: the same position again gives nothing.
    const again = await sync(alice, `?since=${encodeURIComponent(aliceView.position)}`);
    expect(again.conversations).toEqual([]);
    expect(again.position).toBe(aliceView.position);

    // A long-poll returns soon after the next message is ingested, with just that change.
    const started = Date.now();
    const polled = sync(alice, `?since=${encodeURIComponent(aliceView.position)}&wait=20`);
    await b.send(chat(alice.jid, "b3", body("still there?")));
    const woken = await polled;
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(woken.conversations.map((c) => [c.peer, c.messages.map((m) => m.id)])).toEqual([
      [bob.jid, ["b3"]],
    ]);
  });
});
