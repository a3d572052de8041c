import { type Client, xml } from "@xmpp/client";
import { and, asc, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { accounts } from "../../src/store/schema/accounts.js";
import { calls } from "../../src/store/schema/calls.js";
import { conversations } from "../../src/store/schema/conversations.js";
import { events } from "../../src/store/schema/events.js";
import { messages } from "../../src/store/schema/messages.js";
import { openTestStore, type TestStore } from "../helpers/database.js";
import { connectUser, createUser, type TestUser } from "../helpers/ejabberd.js";
import { type RunningIngest, startIngest } from "../helpers/ingest.js";
import { RawSession } from "../helpers/raw-xmpp.js";
import { waitFor } from "../helpers/wait.js";

const ejabberd = inject("ejabberd");
const GAP = 600;

const chat = (to: string, id: string, ...children: ReturnType<typeof xml>[]) =>
  xml("message", { to, id, type: "chat" }, ...children);
const body = (text: string) => xml("body", {}, text);
const originId = (id: string) => xml("origin-id", { xmlns: "urn:xmpp:sid:0", id });

describe("ingest from a real ejabberd", () => {
  let t: TestStore;
  let ingest: RunningIngest;
  beforeAll(async () => {
    t = await openTestStore("postgres");
    ingest = await startIngest(t.store, ejabberd);
  });
  afterAll(async () => {
    await ingest?.stop();
    await t?.close();
  });

  async function accountOf(jid: string) {
    const [row] = await t.store.db.select().from(accounts).where(eq(accounts.jid, jid));
    return row;
  }
  async function eventsOf(jid: string) {
    const account = await accountOf(jid);
    if (!account) return [];
    return t.store.db
      .select()
      .from(events)
      .where(eq(events.accountId, account.id))
      .orderBy(asc(events.seq));
  }
  async function messagesOf(jid: string) {
    const account = await accountOf(jid);
    if (!account) return [];
    return t.store.db
      .select()
      .from(messages)
      .where(eq(messages.accountId, account.id))
      .orderBy(asc(messages.createdSeq));
  }
  async function conversationOf(jid: string, peer: string) {
    const account = await accountOf(jid);
    if (!account) return undefined;
    const [row] = await t.store.db
      .select()
      .from(conversations)
      .where(and(eq(conversations.accountId, account.id), eq(conversations.peerJid, peer)));
    return row;
  }
  const eventCount = async (jid: string, n: number) => (await eventsOf(jid)).length >= n;

  async function online(user: TestUser, resource = "phone"): Promise<Client> {
    return connectUser(ejabberd, user, resource);
  }

  it("mirrors every kind of event, bodyless ones included, on both sides", async () => {
    const alice = await createUser(ejabberd, "alice");
    const bob = await createUser(ejabberd, "bob");
    const a = await online(alice);
    const b = await online(bob);
    // Two sessions race inside ejabberd; each side waits for the other's last stanza so the
    // order is causal, as in a real chat. (Reordered arrival is covered by the store tests.)
    const seenBy = (c: Client) => {
      const ids = new Set<string>();
      c.on("stanza", (s) => s.is("message") && s.attrs.id && ids.add(s.attrs.id));
      return (id: string) => waitFor(() => ids.has(id), { what: `delivery of ${id}` });
    };
    const bobSaw = seenBy(b);
    const aliceSaw = seenBy(a);
    try {
      await a.send(
        chat(
          bob.jid,
          "m1",
          body("helo"),
          originId("m1"),
          xml("markable", { xmlns: "urn:xmpp:chat-markers:0" }),
        ),
      );
      await a.send(
        chat(
          bob.jid,
          "e1",
          body("hello"),
          xml("replace", { xmlns: "urn:xmpp:message-correct:0", id: "m1" }),
        ),
      );
      await bobSaw("e1");
      await b.send(
        chat(
          alice.jid,
          "r1",
          xml("reactions", { xmlns: "urn:xmpp:reactions:0", id: "m1" }, xml("reaction", {}, "👍")),
        ),
      );
      await b.send(
        chat(alice.jid, "d1", xml("displayed", { xmlns: "urn:xmpp:chat-markers:0", id: "m1" })),
      );
      await b.send(chat(alice.jid, "m2", body("oops"), originId("m2")));
      await b.send(
        chat(
          alice.jid,
          "x1",
          xml("retract", { xmlns: "urn:xmpp:message-retract:1", id: "m2" }),
          xml("fallback", { xmlns: "urn:xmpp:fallback:0", for: "urn:xmpp:message-retract:1" }),
          body("This person attempted to retract a previous message"),
        ),
      );
      await aliceSaw("x1");
      await a.send(
        xml(
          "message",
          { to: bob.jid, type: "chat" },
          xml("composing", { xmlns: "http://jabber.org/protocol/chatstates" }),
        ),
      );
      await a.send(
        chat(
          bob.jid,
          "p1",
          xml(
            "propose",
            { xmlns: "urn:xmpp:jingle-message:0", id: "call-1" },
            xml("description", { xmlns: "urn:xmpp:jingle:apps:rtp:1", media: "audio" }),
          ),
        ),
      );

      await waitFor(() => eventCount(alice.jid, 7), { what: "alice's 7 events" });
      await waitFor(() => eventCount(bob.jid, 7), { what: "bob's 7 events" });

      const shape = (e: Awaited<ReturnType<typeof eventsOf>>[number]) => [
        e.seq,
        e.kind,
        e.direction,
        e.targetId,
      ];
      expect((await eventsOf(alice.jid)).map(shape)).toEqual([
        [1, "message", "out", null],
        [2, "edit", "out", "m1"],
        [3, "reaction", "in", "m1"],
        [4, "displayed", "in", "m1"],
        [5, "message", "in", null],
        [6, "retract", "in", "m2"],
        [7, "call", "out", "call-1"],
      ]);
      expect((await eventsOf(bob.jid)).map(shape)).toEqual([
        [1, "message", "in", null],
        [2, "edit", "in", "m1"],
        [3, "reaction", "out", "m1"],
        [4, "displayed", "out", "m1"],
        [5, "message", "out", null],
        [6, "retract", "out", "m2"],
        [7, "call", "in", "call-1"],
      ]);
      // The sender's own archive id rides along on the out side of a body message.
      const [aliceFirst] = await eventsOf(alice.jid);
      expect(aliceFirst?.stanzaId).toMatch(/^\d{16}$/);

      expect(
        (await messagesOf(bob.jid)).map((m) => [
          m.messageId,
          m.direction,
          m.body,
          !!m.editedAt,
          !!m.retractedAt,
          m.reactions,
        ]),
      ).toEqual([
        ["m1", "in", "hello", true, false, { [bob.jid]: ["👍"] }],
        ["m2", "out", null, false, true, {}],
      ]);
      expect(await conversationOf(bob.jid, alice.jid)).toMatchObject({
        version: 7,
        unreadCount: 0,
        readUntil: "m1",
      });
      expect(await conversationOf(alice.jid, bob.jid)).toMatchObject({
        version: 7,
        // bob took back m2 before alice read it, so nothing is left unread.
        unreadCount: 0,
        peerReadUntil: "m1",
      });

      const [bobCall] = await t.store.db
        .select()
        .from(calls)
        .where(eq(calls.accountId, (await accountOf(bob.jid))?.id ?? -1));
      expect(bobCall).toMatchObject({
        callId: "call-1",
        direction: "in",
        state: "proposed",
        media: ["audio"],
        peerJid: alice.jid,
      });
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  it("copies messages for an offline recipient once, and not again when they are flushed", async () => {
    const alice = await createUser(ejabberd, "alice");
    const bob = await createUser(ejabberd, "bob");
    const a = await online(alice);
    try {
      for (let i = 0; i < 5; i++)
        await a.send(chat(bob.jid, `off-${i}`, body(`while you slept ${i}`)));
      await waitFor(() => eventCount(bob.jid, 5), { what: "bob's offline messages" });
      const b = await online(bob);
      const delivered: string[] = [];
      b.on("stanza", (s) => {
        if (s.is("message") && s.getChildText("body")) delivered.push(s.attrs.id);
      });
      await waitFor(() => delivered.length === 5, { what: "offline flush to bob" });
      await a.send(chat(bob.jid, "after", body("now you're up")));
      await waitFor(() => eventCount(bob.jid, 6), { what: "the live message" });
      await b.stop();
      expect((await eventsOf(bob.jid)).map((e) => e.messageId)).toEqual([
        "off-0",
        "off-1",
        "off-2",
        "off-3",
        "off-4",
        "after",
      ]);
      expect(await conversationOf(bob.jid, alice.jid)).toMatchObject({
        version: 6,
        unreadCount: 6,
      });
    } finally {
      await a.stop();
    }
  });

  it("copies a message once when ejabberd routes it again for a lost session's unacked queue", async () => {
    const alice = await createUser(ejabberd, "alice");
    const bob = await createUser(ejabberd, "bob");
    const a = await online(alice);
    // bob's phone enables stream management without resumption and never acknowledges.
    const phone = await RawSession.open(ejabberd, bob, "phone");
    try {
      await a.send(chat(bob.jid, "sm-1", body("are you there?")));
      await phone.until(/id=['"]sm-1['"]/);
      await waitFor(() => eventCount(bob.jid, 1), { what: "bob's message" });
      // The network drops: ejabberd routes sm-1 again (here to offline storage, where bob's
      // next login gets it from), past mod_syncside's hook a second time.
      phone.drop();
      const b = await online(bob);
      const delivered: string[] = [];
      b.on("stanza", (s) => {
        if (s.is("message") && s.attrs.id) delivered.push(s.attrs.id);
      });
      await waitFor(() => delivered.includes("sm-1"), { what: "sm-1 delivered again" });
      await a.send(chat(bob.jid, "sm-after", body("back?")));
      await waitFor(() => eventCount(bob.jid, 2), { what: "the next message" });
      await b.stop();
      expect((await eventsOf(bob.jid)).map((e) => e.messageId)).toEqual(["sm-1", "sm-after"]);
    } finally {
      phone.drop();
      await a.stop();
    }
  });

  it("stores a message as large as ejabberd takes from a client", async () => {
    const alice = await createUser(ejabberd, "alice");
    const bob = await createUser(ejabberd, "bob");
    const a = await online(alice);
    try {
      // Just under the c2s listener's max_stanza_size (256 KB), in two- and three-byte UTF-8:
      // it reaches the observer in many TCP reads, some of them ending inside a character.
      const text = "é€".repeat(50_000);
      await a.send(chat(bob.jid, "large-1", body(text)));
      await waitFor(() => eventCount(bob.jid, 1), { what: "bob's large message" });
      const [stored] = await messagesOf(bob.jid);
      expect(stored?.body).toBe(text);
      expect(ingest.stats.rejects.size).toBe(0);
    } finally {
      await a.stop();
    }
  });

  it("stores a message its recipient blocked on the sender's side only", async () => {
    const alice = await createUser(ejabberd, "alice");
    const bob = await createUser(ejabberd, "bob");
    const a = await online(alice);
    const b = await online(bob);
    const blocking = (verb: "block" | "unblock") =>
      b.iqCaller.set(xml(verb, { xmlns: "urn:xmpp:blocking" }, xml("item", { jid: alice.jid })));
    try {
      await blocking("block");
      await a.send(chat(bob.jid, "blocked-1", body("can you hear me?")));
      await waitFor(() => eventCount(alice.jid, 1), { what: "alice's blocked message" });
      await blocking("unblock");
      await a.send(chat(bob.jid, "after-1", body("and now?")));
      await waitFor(() => eventCount(alice.jid, 2), { what: "alice's second message" });
      await waitFor(() => eventCount(bob.jid, 1), { what: "bob's message" });
      expect((await eventsOf(alice.jid)).map((e) => e.messageId)).toEqual(["blocked-1", "after-1"]);
      expect((await eventsOf(bob.jid)).map((e) => e.messageId)).toEqual(["after-1"]);
      expect(await conversationOf(bob.jid, alice.jid)).toMatchObject({ unreadCount: 1 });
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it("keeps a peer that is not a local account on the local side only", async () => {
    const alice = await createUser(ejabberd, "alice");
    const a = await online(alice);
    try {
      await a.send(chat("carol@remote.example", "far-1", body("hello over there")));
      await a.send(chat(`bot@push.${ejabberd.domain}`, "comp-1", body("hello component")));
      await a.send(chat(`push.${ejabberd.domain}`, "comp-2", body("hello gateway")));
      const ghost = `nobody-${Date.now()}@${ejabberd.domain}`;
      await a.send(chat(ghost, "ghost-1", body("anyone?")));
      await waitFor(() => eventCount(alice.jid, 4), { what: "alice's four messages" });
      // Neither a remote JID, nor a component (by a name at it or its bare domain), nor an
      // unregistered local name becomes an account.
      expect(await accountOf("carol@remote.example")).toBeUndefined();
      expect(await accountOf(ghost)).toBeUndefined();
      expect((await eventsOf(alice.jid)).map((e) => [e.kind, e.direction, e.messageId])).toEqual([
        ["message", "out", "far-1"],
        ["message", "out", "comp-1"],
        ["message", "out", "comp-2"],
        ["message", "out", "ghost-1"],
      ]);
      expect(await accountOf(`push.${ejabberd.domain}`)).toBeUndefined();
      expect(await conversationOf(alice.jid, `push.${ejabberd.domain}`)).toMatchObject({
        version: 3,
      });
      expect(await conversationOf(alice.jid, "carol@remote.example")).toMatchObject({ version: 1 });
    } finally {
      await a.stop();
    }
  });

  it("catches up from the archive what was sent while it was stopped, without duplicates", async () => {
    const alice = await createUser(ejabberd, "alice");
    const bob = await createUser(ejabberd, "bob");
    const a = await online(alice);
    try {
      await a.send(chat(bob.jid, "before", body("1")));
      await waitFor(() => eventCount(bob.jid, 1), { what: "first message" });
      await ingest.stop();
      // More than two archive pages (ejabberd caps a page at 250), so paging is exercised.
      for (let i = 0; i < GAP; i++) await a.send(chat(bob.jid, `gap-${i}`, body(`${i}`)));
      // Bodyless events too: they exist only in the observer's archive while ingest is down.
      await a.send(
        chat(
          bob.jid,
          "gap-r",
          xml(
            "reactions",
            { xmlns: "urn:xmpp:reactions:0", id: "gap-0" },
            xml("reaction", {}, "🎉"),
          ),
        ),
      );
      ingest = await startIngest(t.store, ejabberd);
      await waitFor(() => eventCount(bob.jid, GAP + 2), { what: "catch-up", timeoutMs: 30_000 });
      const ids = (await eventsOf(bob.jid)).map((e) => e.messageId);
      expect(ids).toHaveLength(GAP + 2);
      expect(new Set(ids).size).toBe(GAP + 2);
      expect((await messagesOf(bob.jid))[1]).toMatchObject({
        messageId: "gap-0",
        reactions: { [alice.jid]: ["🎉"] },
      });
    } finally {
      await a.stop();
    }
  });
});
