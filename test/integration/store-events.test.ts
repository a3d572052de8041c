import { randomBytes } from "node:crypto";
import { and, asc, eq, inArray, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_ID_BYTES } from "../../src/ingest/parse.js";
import { dropOtherLanes, laneSource, readCheckpoint } from "../../src/store/checkpoint.js";
import { queryRows } from "../../src/store/db.js";
import {
  appendBatch,
  appendInLanes,
  laneOf,
  loadConversations,
  lockAccounts,
  SELECT_TARGET_MESSAGES,
  saveAccountSeqs,
  saveConversations,
  type WriteOptions,
} from "../../src/store/events.js";
import { accounts } from "../../src/store/schema/accounts.js";
import { checkpoints } from "../../src/store/schema/checkpoints.js";
import { conversations } from "../../src/store/schema/conversations.js";
import { events } from "../../src/store/schema/events.js";
import { messages } from "../../src/store/schema/messages.js";
import { appendSettings } from "../../src/store/settings.js";
import { findConversation, findMessage, messageByIdQuery } from "../../src/store/sync.js";
import {
  callSignal,
  copyOf,
  displayed,
  edit,
  msg,
  nextTime,
  react,
  retract,
} from "../helpers/copies.js";
import { openTestStore, type TestStore } from "../helpers/database.js";

const options: WriteOptions = {
  isLocal: (jid) => jid.endsWith("@example.org"),
  callRingTimeoutMs: 60_000,
};

describe.each(["postgres", "pglite"] as const)("store write path on %s", (driver) => {
  let t: TestStore;
  let n = 0;
  beforeAll(async () => {
    t = await openTestStore(driver);
  });
  afterAll(async () => {
    await t?.close();
  });

  /** Fresh JIDs per test, so tests never see each other's rows. */
  const pair = () => {
    n++;
    return [`alice${n}@example.org`, `bob${n}@example.org`] as const;
  };

  async function accountId(jid: string) {
    const [row] = await t.store.db.select().from(accounts).where(eq(accounts.jid, jid));
    if (!row) throw new Error(`no account ${jid}`);
    return row;
  }
  async function conversation(jid: string, peer: string) {
    const account = await accountId(jid);
    const [row] = await t.store.db
      .select()
      .from(conversations)
      .where(and(eq(conversations.accountId, account.id), eq(conversations.peerJid, peer)));
    return row;
  }
  async function messageRows(jid: string) {
    const account = await accountId(jid);
    return t.store.db
      .select()
      .from(messages)
      .where(eq(messages.accountId, account.id))
      .orderBy(asc(messages.createdSeq));
  }
  async function eventRows(jid: string) {
    const account = await accountId(jid);
    return t.store.db
      .select()
      .from(events)
      .where(eq(events.accountId, account.id))
      .orderBy(asc(events.seq));
  }

  it("writes a message on both local sides with gap-free seqs and versions", async () => {
    const [alice, bob] = pair();
    const r = await appendBatch(
      t.store.db,
      {
        copies: [
          msg(alice, bob, "m1", "hi"),
          msg(bob, alice, "m2", "hello"),
          msg(alice, bob, "m3", "?"),
        ],
      },
      options,
    );
    expect(r).toMatchObject({ written: 6, duplicates: 0, foreign: 0 });

    const a = await eventRows(alice);
    expect(a.map((e) => [e.seq, e.kind, e.direction, e.messageId])).toEqual([
      [1, "message", "out", "m1"],
      [2, "message", "in", "m2"],
      [3, "message", "out", "m3"],
    ]);
    expect((await accountId(alice)).lastSeq).toBe(3);
    expect(await conversation(alice, bob)).toMatchObject({ version: 3, unreadCount: 0 });
    // bob received m1 and m3 unread; his own m2 in between reset the count after m1.
    expect(await conversation(bob, alice)).toMatchObject({ version: 3, unreadCount: 1 });
    expect((await messageRows(bob)).map((m) => [m.messageId, m.direction, m.body])).toEqual([
      ["m1", "in", "hi"],
      ["m2", "out", "hello"],
      ["m3", "in", "?"],
    ]);
  });

  it("keeps each event's own stanza, whatever characters it holds", async () => {
    const [alice, bob] = pair();
    const withRaw = (raw: string, id: string) => {
      const copy = msg(alice, bob, id, id);
      const [event] = copy.events;
      if (event) event.raw = raw;
      return copy;
    };
    const raws = [
      `<message id="q1"><body>"quoted" 'single' \\ back</body></message>`,
      "<message id='q2'><body>über 👍\n\ttabbed</body></message>",
      "<message id='q3'>\u0001 a separator where XML allows none</message>",
      "",
      "<message id='q5'/>",
    ];
    await appendBatch(
      t.store.db,
      { copies: raws.map((raw, i) => withRaw(raw, `q${i + 1}`)) },
      options,
    );
    for (const jid of [alice, bob]) {
      const stored = (await eventRows(jid)).map((e) => [e.messageId, e.payload.raw]);
      expect(stored).toEqual(raws.map((raw, i) => [`q${i + 1}`, raw]));
    }
    // One event alone (a peer on another server: one side, one row), with an empty stanza,
    // and with a separator in it.
    for (const raw of ["", "\u0001", "<message id='q9'/>"]) {
      const [carol] = pair();
      const copy = msg(carol, "dave@elsewhere.net", "solo", "solo");
      if (copy.events[0]) copy.events[0].raw = raw;
      await appendBatch(t.store.db, { copies: [copy] }, options);
      expect((await eventRows(carol))[0]?.payload.raw).toBe(raw);
    }
  });

  it("changes nothing when the same copies are written again", async () => {
    const [alice, bob] = pair();
    const batch = { copies: [msg(alice, bob, "m1", "once"), react(bob, alice, "m1", ["👍"])] };
    const first = await appendBatch(t.store.db, batch, options);
    // The ingest lag is taken from what a batch wrote: a batch read again says nothing of it.
    expect(first.newestWrittenAt).toBe(batch.copies[1]?.sentAt.getTime());
    const before = { events: await eventRows(bob), messages: await messageRows(bob) };
    const again = await appendBatch(t.store.db, batch, options);
    expect(again).toMatchObject({ written: 0, duplicates: 4, newestWrittenAt: null });
    expect(await eventRows(bob)).toEqual(before.events);
    expect(await messageRows(bob)).toEqual(before.messages);
    expect((await accountId(bob)).lastSeq).toBe(2);
  });

  it("folds edits, reactions and a retraction into the message's current state", async () => {
    const [alice, bob] = pair();
    const m = msg(alice, bob, "m1", "helo");
    const e1 = edit(alice, bob, "m1", "hello");
    const e2 = edit(alice, bob, "m1", "hello!");
    const r1 = react(bob, alice, "m1", ["👍", "🎉"]);
    await appendBatch(t.store.db, { copies: [m, e1] }, options);
    await appendBatch(t.store.db, { copies: [e2, r1] }, options);

    const [aliceView] = await messageRows(alice);
    expect(aliceView).toMatchObject({
      messageId: "m1",
      direction: "out",
      body: "hello!",
      editedAt: e2.sentAt,
      retractedAt: null,
      reactions: { [bob]: ["👍", "🎉"] },
      createdSeq: 1,
      seq: 4,
    });
    const [bobView] = await messageRows(bob);
    expect(bobView).toMatchObject({
      direction: "in",
      body: "hello!",
      reactions: { [bob]: ["👍", "🎉"] },
    });

    const x = retract(alice, bob, "m1");
    const r2 = react(bob, alice, "m1", []);
    await appendBatch(t.store.db, { copies: [x, r2] }, options);
    expect((await messageRows(bob))[0]).toMatchObject({
      body: null,
      retractedAt: x.sentAt,
      reactions: {},
      seq: 6,
    });
    // The event log keeps every step.
    expect((await eventRows(bob)).map((e) => e.kind)).toEqual([
      "message",
      "edit",
      "edit",
      "reaction",
      "retract",
      "reaction",
    ]);
  });

  it("stores ids of the longest length parsing keeps, incompressible, in every index", async () => {
    const [alice, bob] = pair();
    // Random text does not compress: an index entry holds all of it.
    const longest = () => randomBytes((MAX_ID_BYTES / 4) * 3).toString("base64");
    const id = longest();
    const callId = longest();
    expect(Buffer.byteLength(id)).toBe(MAX_ID_BYTES);
    await appendBatch(
      t.store.db,
      {
        copies: [
          copyOf({
            kind: "message",
            from: alice,
            to: bob,
            messageId: id,
            originId: id,
            body: "hi",
          }),
          edit(alice, bob, id, "hi!"),
          react(bob, alice, id, ["👍"]),
          displayed(bob, alice, id),
          callSignal(alice, bob, { action: "propose", callId }),
        ],
      },
      options,
    );
    expect(await messageRows(bob)).toMatchObject([
      { messageId: id, body: "hi!", reactions: { [bob]: ["👍"] } },
    ]);
    expect((await conversation(alice, bob))?.peerReadUntil).toBe(id);
  });

  it("takes a message id used twice in one batch as the store does across batches", async () => {
    const [alice, bob] = pair();
    const first = msg(alice, bob, "dup", "first");
    await appendBatch(t.store.db, { copies: [first, msg(alice, bob, "dup", "second")] }, options);
    // One row, the later text, created where the id first appeared.
    expect(await messageRows(bob)).toMatchObject([
      { messageId: "dup", body: "second", createdSeq: 1 },
    ]);
    await appendBatch(t.store.db, { copies: [msg(alice, bob, "dup", "third")] }, options);
    expect(await messageRows(bob)).toMatchObject([
      { messageId: "dup", body: "third", createdSeq: 1 },
    ]);
  });

  it("keeps a message whose id is another message's origin-id, and edits the one it names", async () => {
    const [alice, bob] = pair();
    const a = msg(alice, bob, "x", "a");
    const b = copyOf({
      kind: "message",
      from: alice,
      to: bob,
      messageId: "y",
      originId: "x",
      body: "b",
    });
    await appendBatch(t.store.db, { copies: [a, b, edit(alice, bob, "x", "a, edited")] }, options);
    expect((await messageRows(bob)).map((m) => [m.messageId, m.body])).toEqual([
      ["x", "a, edited"],
      ["y", "b"],
    ]);
  });

  it("ends in the right state when an edit and a reaction arrive before their message", async () => {
    const [alice, bob] = pair();
    const m = msg(alice, bob, "late", "first draft");
    const e = edit(alice, bob, "late", "final text");
    const r = react(bob, alice, "late", ["❤️"]);
    m.sentAt = new Date(e.sentAt.getTime() - 5000);
    await appendBatch(t.store.db, { copies: [e] }, options);
    await appendBatch(t.store.db, { copies: [r, m] }, options);
    expect(await messageRows(alice)).toMatchObject([
      {
        messageId: "late",
        body: "final text",
        editedAt: e.sentAt,
        reactions: { [bob]: ["❤️"] },
        seq: 3,
      },
    ]);
  });

  it("keeps a peer that is not a local account on the local side only", async () => {
    const [alice] = pair();
    const remote = "carol@remote.example";
    const r = await appendBatch(
      t.store.db,
      { copies: [msg(alice, remote, "x1", "hi"), msg(remote, alice, "x2", "yo")] },
      options,
    );
    expect(r).toMatchObject({ written: 2, foreign: 0 });
    expect(await t.store.db.select().from(accounts).where(eq(accounts.jid, remote))).toEqual([]);
    expect(await conversation(alice, remote)).toMatchObject({ version: 2, unreadCount: 1 });

    const none = await appendBatch(
      t.store.db,
      { copies: [msg(remote, "dave@remote.example", "x3", "?")] },
      options,
    );
    expect(none).toMatchObject({ written: 0, foreign: 1 });
  });

  it("moves read markers and unread counts with displayed markers", async () => {
    const [alice, bob] = pair();
    await appendBatch(
      t.store.db,
      {
        copies: [
          msg(alice, bob, "a1", "1"),
          msg(alice, bob, "a2", "2"),
          displayed(bob, alice, "a2"),
        ],
      },
      options,
    );
    expect(await conversation(bob, alice)).toMatchObject({
      unreadCount: 0,
      readUntil: "a2",
      version: 3,
    });
    expect(await conversation(alice, bob)).toMatchObject({ peerReadUntil: "a2", version: 3 });
  });

  it("keeps each reacter's latest reaction by server time, whichever is written first", async () => {
    const [alice, bob] = pair();
    await appendBatch(t.store.db, { copies: [msg(alice, bob, "m1", "hi")] }, options);
    // Made in this order, so each is later by server time than the one before.
    const older = react(bob, alice, "m1", ["👍"]);
    const newer = react(bob, alice, "m1", ["🎉"]);
    await appendBatch(t.store.db, { copies: [newer] }, options);
    await appendBatch(t.store.db, { copies: [older] }, options);
    expect((await messageRows(alice))[0]?.reactions).toEqual({ [bob]: ["🎉"] });

    // A removal beats an older reaction too, in one batch as across batches.
    const add = react(bob, alice, "m1", ["👀"]);
    const removal = react(bob, alice, "m1", []);
    await appendBatch(t.store.db, { copies: [removal, add] }, options);
    expect((await messageRows(alice))[0]?.reactions).toEqual({});

    // And when both are written before their message (sent before them).
    const m2 = msg(bob, alice, "m2", "later");
    const first = react(alice, bob, "m2", ["1️⃣"]);
    const second = react(alice, bob, "m2", ["2️⃣"]);
    await appendBatch(t.store.db, { copies: [second] }, options);
    await appendBatch(t.store.db, { copies: [first] }, options);
    await appendBatch(t.store.db, { copies: [m2] }, options);
    expect((await messageRows(alice)).find((m) => m.messageId === "m2")?.reactions).toEqual({
      [alice]: ["2️⃣"],
    });
  });

  it("moves no read marker back for a displayed marker older than the one in place", async () => {
    const [alice, bob] = pair();
    const a1 = msg(alice, bob, "a1", "1");
    const a2 = msg(alice, bob, "a2", "2");
    const late = displayed(bob, alice, "a1");
    const seen = displayed(bob, alice, "a2");
    const a3 = msg(alice, bob, "a3", "3");
    await appendBatch(t.store.db, { copies: [a1, a2, seen, a3] }, options);
    const before = { readUntil: "a2", unreadCount: 1 };
    expect(await conversation(bob, alice)).toMatchObject(before);
    expect(await conversation(alice, bob)).toMatchObject({ peerReadUntil: "a2" });
    // bob's older marker reaches the store last (a catch-up behind live copies).
    await appendBatch(t.store.db, { copies: [late] }, options);
    expect(await conversation(bob, alice)).toMatchObject({ ...before, version: 5 });
    expect(await conversation(alice, bob)).toMatchObject({ peerReadUntil: "a2", version: 5 });

    // Nor does a marker older than a read_until set through the API.
    const stale = displayed(bob, alice, "a2");
    await appendSettings(t.store.db, {
      accountJid: bob,
      peer: alice,
      change: { readUntil: "a3" },
      now: nextTime(),
    });
    await appendBatch(t.store.db, { copies: [stale] }, options);
    expect(await conversation(bob, alice)).toMatchObject({ readUntil: "a3", unreadCount: 0 });
  });

  it("takes a retracted unread message off the badge, but not one already read", async () => {
    const [alice, bob] = pair();
    await appendBatch(
      t.store.db,
      {
        copies: [
          msg(bob, alice, "u1", "1"),
          msg(bob, alice, "u2", "2"),
          msg(bob, alice, "u3", "3"),
        ],
      },
      options,
    );
    await appendBatch(t.store.db, { copies: [retract(bob, alice, "u2")] }, options);
    expect(await conversation(alice, bob)).toMatchObject({ unreadCount: 2 });
    await appendBatch(
      t.store.db,
      { copies: [displayed(alice, bob, "u3"), retract(bob, alice, "u1")] },
      options,
    );
    expect(await conversation(alice, bob)).toMatchObject({ unreadCount: 0 });
    // Retracted again (a replayed or repeated retraction) changes nothing more.
    await appendBatch(
      t.store.db,
      { copies: [msg(bob, alice, "u4", "4"), retract(bob, alice, "u2")] },
      options,
    );
    expect(await conversation(alice, bob)).toMatchObject({ unreadCount: 1 });
    // A message whose retraction was stored first never counts.
    const late = msg(bob, alice, "u5", "5");
    await appendBatch(t.store.db, { copies: [retract(bob, alice, "u5")] }, options);
    await appendBatch(t.store.db, { copies: [late] }, options);
    expect(await conversation(alice, bob)).toMatchObject({ unreadCount: 1 });
  });

  it("advances the checkpoint with the batch, never backwards", async () => {
    const source = `observer-${driver}`;
    await appendBatch(
      t.store.db,
      { copies: [], checkpoint: { source, position: "1732600000000200" } },
      options,
    );
    await appendBatch(
      t.store.db,
      { copies: [], checkpoint: { source, position: "1732600000000100" } },
      options,
    );
    const [row] = await t.store.db.select().from(checkpoints).where(eq(checkpoints.source, source));
    expect(row?.position).toBe("1732600000000200");
  });

  it("writes a batch in lanes: each account in one, each lane advancing its own checkpoint", async () => {
    n++;
    const people = Array.from({ length: 12 }, (_, i) => `lane${n}-${i}@example.org`);
    const copies = people.flatMap((from, i) => {
      const to = people[(i + 5) % people.length] as string;
      return [msg(from, to, `l${i}`, `hello ${i}`), displayed(to, from, `l${i}`)];
    });
    const source = `lanes-${driver}`;
    const r = await appendInLanes(
      t.store.db,
      { copies, checkpoint: { source, position: "1732600000000300" } },
      options,
      3,
    );
    expect(r).toMatchObject({ written: 48, duplicates: 0, foreign: 0 });
    expect(new Set(r.accountIds).size).toBe(12);
    expect(new Set(people.map((jid) => laneOf(jid, 3))).size).toBe(3);
    for (const jid of people) {
      expect((await eventRows(jid)).map((e) => e.seq)).toEqual([1, 2, 3, 4]);
      expect((await accountId(jid)).lastSeq).toBe(4);
    }
    expect(await conversation(people[5] as string, people[0] as string)).toMatchObject({
      version: 2,
      unreadCount: 0,
      readUntil: "l0",
    });

    // A batch with nothing to write still moves every lane's row.
    await appendInLanes(
      t.store.db,
      { copies: [], checkpoint: { source, position: "1732600000000400" } },
      options,
      3,
    );
    const rows = await t.store.db
      .select()
      .from(checkpoints)
      .where(
        inArray(
          checkpoints.source,
          [0, 1, 2].map((lane) => laneSource(source, lane, 3)),
        ),
      );
    expect(rows.map((row) => row.position)).toEqual(Array(3).fill("1732600000000400"));
    expect((await readCheckpoint(t.store.db, source))?.position).toBe("1732600000000400");

    const again = await appendInLanes(t.store.db, { copies }, options, 3);
    expect(again).toMatchObject({ written: 0, duplicates: 48 });
  });

  it("resumes from the lowest lane, and from the start while a lane has no row yet", async () => {
    const source = `resume-${driver}`;
    const put = (name: string, position: string) =>
      t.store.db
        .insert(checkpoints)
        .values({ source: name, position })
        .onConflictDoUpdate({ target: checkpoints.source, set: { position } });
    // A first batch in two lanes of which only one committed: the other lane has read nothing.
    await put(laneSource(source, 0, 2), "1732600000000300");
    expect(await readCheckpoint(t.store.db, source)).toBeNull();
    // Rows of the lane count before still bound the lanes without a row of their own.
    await put(source, "1732600000000200");
    expect((await readCheckpoint(t.store.db, source))?.position).toBe("1732600000000200");
    await put(laneSource(source, 1, 2), "1732600000000250");
    expect((await readCheckpoint(t.store.db, source))?.position).toBe("1732600000000200");
    // Once every current lane has a row, the older rows go.
    await dropOtherLanes(t.store.db, source, 2);
    expect((await readCheckpoint(t.store.db, source))?.position).toBe("1732600000000250");
    expect(
      (await t.store.db.select().from(checkpoints).where(eq(checkpoints.source, source))).length,
    ).toBe(0);
  });

  it("rolls back the whole batch, checkpoint included, when any part fails", async () => {
    const [alice, bob] = pair();
    const source = `rollback-${driver}`;
    const bad = copyOf({ kind: "message", from: alice, to: bob, messageId: "m", body: "\u0000" });
    await expect(
      appendBatch(
        t.store.db,
        { copies: [msg(alice, bob, "ok", "fine"), bad], checkpoint: { source, position: "5" } },
        options,
      ),
    ).rejects.toThrow();
    expect(await t.store.db.select().from(accounts).where(eq(accounts.jid, alice))).toEqual([]);
    expect(
      await t.store.db.select().from(checkpoints).where(eq(checkpoints.source, source)),
    ).toEqual([]);
  });

  it("keeps seqs gap-free and unique under concurrent writers", async () => {
    const [alice, bob] = pair();
    const batches = Array.from({ length: 8 }, (_, i) =>
      appendBatch(
        t.store.db,
        { copies: Array.from({ length: 25 }, (_, j) => msg(alice, bob, `c${i}-${j}`, "x")) },
        options,
      ),
    );
    await Promise.all(batches);
    const seqs = (await eventRows(alice)).map((e) => e.seq);
    expect(seqs).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    expect(await conversation(alice, bob)).toMatchObject({ version: 200 });
  });
  it("saves every conversation and account of a wide batch in one statement each", async () => {
    n++;
    const people = Array.from({ length: 120 }, (_, i) => `wide${n}-${i}@example.org`);
    const copies = people.flatMap((from, i) => {
      const to = people[(i + 1) % people.length] as string;
      return [msg(from, to, `w${i}`, `hello ${i}`), displayed(to, from, `w${i}`)];
    });
    const statements: string[] = [];
    await t.store.db.transaction(async (tx) => {
      // Count what reaches the database from the two savers, the rest of the batch aside.
      const spy = new Proxy(tx, {
        get(target, key, receiver) {
          const value = Reflect.get(target, key, receiver);
          if (typeof value !== "function") return value;
          return (...args: unknown[]) => {
            if (["execute", "update", "insert"].includes(String(key))) statements.push(String(key));
            return value.apply(target, args);
          };
        },
      });
      const locked = await lockAccounts(tx, people);
      const convs = await loadConversations(
        tx,
        people.map((jid, i) => ({
          accountId: (locked.get(jid) as { id: number }).id,
          peer: people[(i + 1) % people.length] as string,
        })),
      );
      for (const [i, conv] of [...convs.values()].entries()) {
        conv.version = 10 + i;
        conv.lastEventSeq = 10 + i;
        conv.unreadCount = i % 3;
        conv.readUntil = i % 2 === 0 ? `r${i}` : null;
        conv.lastMessageAt = new Date(Date.UTC(2026, 10, 26, 8, 0, i));
      }
      for (const account of locked.values()) account.lastSeq = 7;
      statements.length = 0;
      await saveConversations(spy as typeof tx, convs.values());
      await saveAccountSeqs(spy as typeof tx, locked.values());
      expect(statements).toEqual(["execute", "execute"]);
    });
    const rows = await t.store.db
      .select()
      .from(conversations)
      .where(inArray(conversations.peerJid, people))
      .orderBy(asc(conversations.version));
    expect(rows).toHaveLength(120);
    rows.forEach((row, i) => {
      expect(row).toMatchObject({
        version: 10 + i,
        lastEventSeq: 10 + i,
        unreadCount: i % 3,
        readUntil: i % 2 === 0 ? `r${i}` : null,
        lastMessageAt: new Date(Date.UTC(2026, 10, 26, 8, 0, i)),
      });
    });
    expect((await accountId(people[0] as string)).lastSeq).toBe(7);
    expect((await accountId(people[119] as string)).lastSeq).toBe(7);

    // And the write path itself on the same wide batch: every conversation ends in its state.
    const r = await appendBatch(t.store.db, { copies }, options);
    expect(r.written).toBe(480);
    expect(await conversation(people[1] as string, people[0] as string)).toMatchObject({
      version: 9,
      unreadCount: 0,
      readUntil: "w0",
    });
  });
});

describe("the lookups of single messages, on postgres", () => {
  let t: TestStore;
  beforeAll(async () => {
    t = await openTestStore("postgres");
  });
  afterAll(async () => {
    await t?.close();
  });

  it("finds a target by its unique key, not by reading its whole conversation", async () => {
    // Many accounts with a few conversations each: PostgreSQL, taking account and conversation as
    // independent, then expects under one message per conversation, as per message id.
    const user = (i: number) => `user${i}@example.org`;
    const copies = [];
    for (let a = 0; a < 60; a++) {
      for (let k = 1; k <= 5; k++) {
        for (let m = 0; m < 10; m++) {
          copies.push(msg(user(a), user((a + k * 7) % 60), `u${a}-k${k}-m${m}`, `m${m}`));
        }
      }
    }
    await appendBatch(t.store.db, { copies }, options);
    await t.store.db.execute(sql`analyze messages, conversations, accounts`);
    const [owner] = await t.store.db
      .select()
      .from(accounts)
      .where(eq(accounts.jid, user(3)));
    const targets = JSON.stringify([
      { a: owner?.id, p: user(10), d: "out", i: "u3-k1-m4" },
      { a: owner?.id, p: user(17), d: "out", i: "u3-k2-m9" },
    ]);
    // The plan every run of the prepared statement keeps once it goes generic.
    const plan = await t.store.db.transaction(async (tx) => {
      await tx.execute(sql`set local plan_cache_mode = force_generic_plan`);
      await tx.execute(sql.raw(`prepare target_lookup(json) as ${SELECT_TARGET_MESSAGES}`));
      // EXECUTE takes no bound parameter under EXPLAIN: the ids above are plain, quote-free text.
      const rows = await queryRows<{ "QUERY PLAN": string }>(
        tx,
        sql.raw(`explain (analyze, costs off) execute target_lookup('${targets}')`),
      );
      await tx.execute(sql`deallocate target_lookup`);
      return rows.map((r) => r["QUERY PLAN"]).join("\n");
    });
    expect(plan).toContain("Index Scan using messages_key on messages");
    expect(plan).not.toContain("messages_account_conversation_sent");
    expect(plan).not.toContain("Rows Removed by Filter");
  });

  it("finds a message by its id with the whole key, not by reading the conversation's range", async () => {
    // One long conversation: the id alone, after account and conversation, is no index prefix.
    const [me, peer] = ["long-me@example.org", "long-peer@example.org"];
    const copies = Array.from({ length: 2000 }, (_, i) =>
      i % 2 ? msg(me, peer, `long-${i}`, "out") : msg(peer, me, `long-${i}`, "in"),
    );
    await appendBatch(t.store.db, { copies }, options);
    await t.store.db.execute(sql`analyze messages`);
    const [owner] = await t.store.db.select().from(accounts).where(eq(accounts.jid, me));
    const conversation = owner && (await findConversation(t.store.db, owner.id, peer));
    if (!conversation) throw new Error("no conversation");
    expect((await findMessage(t.store.db, conversation, "long-1001"))?.body).toBe("out");
    const rows = await queryRows<{ "QUERY PLAN": string }>(
      t.store.db,
      sql`explain (analyze, costs off) ${messageByIdQuery(t.store.db, conversation, "long-1001")}`,
    );
    const plan = rows.map((r) => r["QUERY PLAN"]).join("\n");
    expect(plan).toContain("Index Scan using messages_key on messages");
    expect(plan).toMatch(/Index Cond: .*direction = ANY/);
  });
});
