import { xml } from "@xmpp/client";
import { and, eq } from "drizzle-orm";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { accounts } from "../../src/store/schema/accounts.js";
import { events } from "../../src/store/schema/events.js";
import { openTestStore, type TestStore } from "../helpers/database.js";
import { connectUser, createUser } from "../helpers/ejabberd.js";
import { type RunningIngest, startIngest } from "../helpers/ingest.js";
import { waitFor } from "../helpers/wait.js";

/** Live copies the observer holds for the store before it stops taking them. */
const MAX_PENDING = 5;

describe("ingest when the store cannot keep up with live copies", () => {
  const ejabberd = inject("ejabberd");
  let t: TestStore;
  let ingest: RunningIngest;
  beforeAll(async () => {
    t = await openTestStore("postgres");
    ingest = await startIngest(t.store, ejabberd, {}, { maxPendingLive: MAX_PENDING });
  });
  afterAll(async () => {
    await ingest?.stop();
    await t?.close();
  });

  async function stored(jid: string): Promise<string[]> {
    const rows = await t.store.db
      .select({ id: events.messageId })
      .from(events)
      .innerJoin(accounts, eq(accounts.id, events.accountId))
      .where(and(eq(accounts.jid, jid), eq(events.kind, "message")));
    return rows.map((r) => r.id ?? "");
  }

  it("stops taking them, then stores every one exactly once when the store is back", async () => {
    const alice = await createUser(ejabberd, "alice");
    const bob = await createUser(ejabberd, "bob");
    const a = await connectUser(ejabberd, alice, "phone");
    // Writes wait behind a lock on the event log, as on a database that stopped answering.
    const url = t.database?.url;
    if (!url) throw new Error("the test store has no database URL");
    const blocker = postgres(url, { max: 1, onnotice: () => {} });
    const held = blocker.reserve();
    const session = await held;
    try {
      await session`begin`;
      await session`lock table events in exclusive mode`;
      const ids = Array.from({ length: 4 * MAX_PENDING }, (_, i) => `bp${i}`);
      for (const id of ids) {
        await a.send(xml("message", { to: bob.jid, id, type: "chat" }, xml("body", {}, id)));
      }
      // Live no more: the observer went back to a catch-up, which waits on the store.
      await waitFor(() => ingest.stats.catchingUp, { what: "the observer leaving live copies" });
      expect(await stored(bob.jid)).toEqual([]);
      await session`commit`;
      await waitFor(async () => (await stored(bob.jid)).length >= ids.length, {
        timeoutMs: 30_000,
        what: "every message stored",
      });
      await waitFor(() => !ingest.stats.catchingUp, { what: "live copies again" });
      expect((await stored(bob.jid)).sort()).toEqual([...ids].sort());
      expect((await stored(alice.jid)).sort()).toEqual([...ids].sort());
    } finally {
      await session`rollback`.catch(() => {});
      session.release();
      await blocker.end();
      await a.stop();
    }
  });
});
