import xml from "@xmpp/xml";
import { asc, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IngestStats } from "../../src/ingest/stats.js";
import { accounts } from "../../src/store/schema/accounts.js";
import { messages } from "../../src/store/schema/messages.js";
import { nextTime, wireCopy } from "../helpers/copies.js";
import { openTestStore, type TestStore } from "../helpers/database.js";
import { pipelineFor } from "../helpers/ingest.js";

const removal = (jid: string, at: Date, from = "example.org") =>
  xml(
    "message",
    { from, to: "observer@example.org", id: `tap-removed-${at.getTime()}` },
    xml("removed", { xmlns: "urn:syncside:tap:0", jid, stamp: at.toISOString() }),
  );

describe("ingest of an account removal, in order with the copies around it", () => {
  let t: TestStore;
  beforeAll(async () => {
    t = await openTestStore("postgres");
  });
  afterAll(async () => {
    await t?.close();
  });

  async function bodiesOf(jid: string) {
    const [account] = await t.store.db.select().from(accounts).where(eq(accounts.jid, jid));
    if (!account) return [];
    const rows = await t.store.db
      .select({ body: messages.body })
      .from(messages)
      .where(eq(messages.accountId, account.id))
      .orderBy(asc(messages.createdSeq));
    return rows.map((r) => r.body);
  }

  it("drops what was sent before the removal and keeps what came after, read once or twice", async () => {
    const alice = "alice-removed@example.org";
    const bob = "bob-stays@example.org";
    const stats = new IngestStats();
    const ingest = pipelineFor(t.store, { lanes: 2, stats });
    const pipeline = {
      push: (copies: ReturnType<typeof removal>[]) =>
        ingest.push(copies.map((c) => ({ copy: c, archiveId: null }))),
      close: () => ingest.close(),
    };
    const copy = (from: string, to: string, id: string) =>
      wireCopy({ from, to, id, body: id, stamp: nextTime().toISOString() });
    await pipeline.push([copy(alice, bob, "stored-before")]);
    expect(await bodiesOf(alice)).toEqual(["stored-before"]);

    // One batch, as a catch-up reads it: a copy before the removal, the notice, copies after.
    const before = copy(bob, alice, "before");
    const notice = removal(alice, nextTime());
    const after = [copy(bob, alice, "after-1"), copy(alice, bob, "after-2")];
    await pipeline.push([before, notice, ...after]);
    expect(await bodiesOf(alice)).toEqual(["after-1", "after-2"]);
    // bob's side is bob's: all of it stays.
    expect(await bodiesOf(bob)).toEqual(["stored-before", "before", "after-1", "after-2"]);

    // Read again (live, then from the archive's look-back): the new owner's mirror stays.
    await pipeline.push([before, notice, ...after]);
    await pipeline.push([notice]);
    expect(await bodiesOf(alice)).toEqual(["after-1", "after-2"]);

    // A notice from another server, even naming its own account, erases nothing here.
    await pipeline.push([removal(alice, nextTime(), "evil.example")]);
    await pipeline.push([removal("alice-removed@evil.example", nextTime(), "evil.example")]);
    expect(await bodiesOf(alice)).toEqual(["after-1", "after-2"]);
    expect(stats.rejects.get("foreign_origin")).toBe(1);
    expect(stats.rejects.get("bad_jid")).toBe(1);
    pipeline.close();
  });

  it("remembers the removal of an account it never stored, for copies that come later", async () => {
    const carol = "carol-never-seen@example.org";
    const bob = "bob-writes@example.org";
    const ingest = pipelineFor(t.store, { lanes: 2 });
    const push = (copies: ReturnType<typeof removal>[]) =>
      ingest.push(copies.map((c) => ({ copy: c, archiveId: null })));
    const sentBefore = nextTime();
    // The notice comes first: the copy was written to the archive late, or came from offline
    // storage at the observer's next login.
    await push([removal(carol, nextTime())]);
    await push([
      wireCopy({ from: bob, to: carol, id: "late", body: "late", stamp: sentBefore.toISOString() }),
    ]);
    expect(await bodiesOf(carol)).toEqual([]);
    await push([
      wireCopy({ from: bob, to: carol, id: "new", body: "new", stamp: nextTime().toISOString() }),
    ]);
    expect(await bodiesOf(carol)).toEqual(["new"]);
    ingest.close();
  });
});
