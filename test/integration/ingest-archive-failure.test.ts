import { chmod, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Client, xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import { eq } from "drizzle-orm";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { accounts } from "../../src/store/schema/accounts.js";
import { events } from "../../src/store/schema/events.js";
import { dropDatabase, openTestStore, type TestStore } from "../helpers/database.js";
import {
  connectUser,
  createUser,
  type EjabberdInstance,
  ejabberdScript,
  freeInstanceBase,
  instanceAt,
  type TestUser,
} from "../helpers/ejabberd.js";
import { type RunningIngest, startIngest } from "../helpers/ingest.js";
import { waitFor } from "../helpers/wait.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const chat = (to: string, id: string, text: string) =>
  xml("message", { to, id, type: "chat" }, xml("body", {}, text));

/**
 * ejabberd failing to write the observer's copies into its SQL archive (a database restart, a
 * query timeout, a full pool), made to happen with a trigger that refuses the observer's rows.
 * Needs an ejabberd of its own: on the shared one, other test files' ingest sessions are the
 * observer too, and would take the copies this test expects to be kept for its own.
 */
describe("ingest when ejabberd cannot archive the observer's copies", () => {
  let work: string;
  let ejabberd: EjabberdInstance;
  let archive: postgres.Sql;
  let t: TestStore;
  let ingest: RunningIngest | undefined;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "syncside-archive-failure-"));
    // ejabberd runs as its own user and must reach its home inside this directory.
    await chmod(work, 0o755);
    ejabberd = instanceAt({
      home: join(work, "ejabberd"),
      // Apart from the fault scenario's range (26200-28199): the two run side by side, and a
      // base found free by one may be starting up for the other.
      base: await freeInstanceBase(28200, 30200),
      domain: "archive-failure.test",
      name: "archive_failure",
    });
    await dropDatabase(databaseOf(ejabberd));
    await ejabberdScript(root, ejabberd, "start");
    archive = postgres(ejabberd.sql, { max: 1, onnotice: () => {} });
    t = await openTestStore("postgres");
  });
  afterAll(async () => {
    await ingest?.stop();
    await archive?.end();
    await t?.close();
    if (ejabberd) {
      await ejabberdScript(root, ejabberd, "stop").catch(() => {});
      await dropDatabase(databaseOf(ejabberd));
    }
    if (work) await rm(work, { recursive: true, force: true });
  });

  function databaseOf(i: EjabberdInstance): string {
    return new URL(i.sql).pathname.slice(1);
  }

  /** The events stored on `jid`'s side: their stanza ids, sorted, duplicates kept. */
  async function storedIdsOf(jid: string): Promise<string[]> {
    const rows = await t.store.db
      .select({ messageId: events.messageId })
      .from(events)
      .innerJoin(accounts, eq(accounts.id, events.accountId))
      .where(eq(accounts.jid, jid));
    return rows.map((r) => r.messageId ?? "(none)").sort();
  }

  /** Waits until `jid`'s side holds as many events as `expected`, then says it holds exactly those. */
  async function expectStored(jid: string, expected: string[], what: string): Promise<void> {
    await waitFor(async () => (await storedIdsOf(jid)).length >= expected.length, {
      what,
      timeoutMs: 15_000,
    }).catch(() => {});
    expect(await storedIdsOf(jid), what).toEqual([...expected].sort());
  }

  /** Sends each stanza and waits until the recipient's client got it: its copy is then made. */
  async function exchange(
    sends: { from: Client; stanza: Element }[],
    received: Set<string>,
  ): Promise<void> {
    for (const { from, stanza } of sends) await from.send(stanza);
    await waitFor(() => sends.every(({ stanza }) => received.has(stanza.attrs.id)), {
      what: "every stanza delivered",
    });
  }

  async function refuseObserverRows(): Promise<void> {
    const [observer] = ejabberd.observerJid.split("@");
    await archive.unsafe(`
      create function syncside_test_refuse() returns trigger language plpgsql as $$
      begin raise exception 'archive write refused by the test'; end $$`);
    await archive.unsafe(`
      create trigger syncside_test_refuse before insert on archive for each row
      when (new.username = '${observer}') execute function syncside_test_refuse()`);
  }

  async function acceptObserverRows(): Promise<void> {
    await archive.unsafe("drop trigger if exists syncside_test_refuse on archive");
    await archive.unsafe("drop function if exists syncside_test_refuse()");
  }

  it("loses no copy the archive refused, whether syncside is away or connected", async () => {
    const alice: TestUser = await createUser(ejabberd, "alice");
    const bob: TestUser = await createUser(ejabberd, "bob");
    const a = await connectUser(ejabberd, alice);
    const b = await connectUser(ejabberd, bob);
    const received = new Set<string>();
    for (const c of [a, b]) {
      c.on("stanza", (s: Element) => {
        if (s.is("message") && typeof s.attrs.id === "string") received.add(s.attrs.id);
      });
    }
    const [observer] = ejabberd.observerJid.split("@");
    // The observer's rows in ejabberd's archive and in its offline storage.
    const rowsOf = async (table: "archive" | "spool") =>
      (
        await archive<{ xml: string }[]>`select xml from ${archive(table)}
          where username = ${observer as string}`
      ).map((r) => r.xml);
    const observerRows = () => rowsOf("archive");
    const observerSpool = () => rowsOf("spool");
    const ids = (prefix: string) => Array.from({ length: 5 }, (_, k) => `${prefix}-${k}`);
    const bodyless = (prefix: string) => [
      {
        from: b,
        stanza: xml(
          "message",
          { to: alice.jid, id: `${prefix}-reaction`, type: "chat" },
          xml(
            "reactions",
            { xmlns: "urn:xmpp:reactions:0", id: `${prefix}-0` },
            xml("reaction", {}, "👍"),
          ),
        ),
      },
      {
        from: b,
        stanza: xml(
          "message",
          { to: alice.jid, id: `${prefix}-displayed`, type: "chat" },
          xml("displayed", { xmlns: "urn:xmpp:chat-markers:0", id: `${prefix}-4` }),
        ),
      },
    ];
    const burst = (prefix: string) => [
      ...ids(prefix).map((id) => ({ from: a, stanza: chat(bob.jid, id, `${prefix} ${id}`) })),
      ...bodyless(prefix),
    ];
    const expected: string[] = [];

    try {
      await refuseObserverRows();

      // syncside away: ejabberd's archive refuses every copy.
      const away = burst("away");
      await exchange(away, received);
      expected.push(...away.map((s) => s.stanza.attrs.id as string));
      expect(await observerRows()).toEqual([]);
      // Kept in the observer's offline storage instead, without the <offline/> marker.
      const spooled = await observerSpool();
      expect(spooled).toHaveLength(away.length);
      expect(spooled.filter((x) => x.includes("jabber.org/protocol/offline"))).toEqual([]);

      // syncside connected, the archive still refusing.
      ingest = await startIngest(t.store, ejabberd);
      const live = burst("live");
      await exchange(live, received);
      expected.push(...live.map((s) => s.stanza.attrs.id as string));
      for (const jid of [alice.jid, bob.jid]) {
        await expectStored(jid, expected, `${jid}'s side of the copies the archive refused`);
      }
      expect(await observerRows()).toEqual([]);
      expect(await observerSpool()).toEqual([]);
    } finally {
      await acceptObserverRows();
    }

    // The archive works again. A restarted syncside reads it from its checkpoint, over copies it
    // already took live.
    const after = burst("after");
    await exchange(after, received);
    expected.push(...after.map((s) => s.stanza.attrs.id as string));
    await ingest.stop();
    ingest = await startIngest(t.store, ejabberd);
    // 0 missing, 0 duplicated, on both sides.
    for (const jid of [alice.jid, bob.jid]) {
      await expectStored(jid, expected, `${jid}'s side of every copy`);
    }
    expect((await observerRows()).length).toBe(after.length);
    // Each refused copy is in ejabberd's log, by its copy id.
    const refused = 2 * burst("x").length;
    await waitFor(
      async () => {
        const log = await readFile(join(ejabberd.home, "logs", "ejabberd.log"), "utf8");
        return (log.match(/mod_syncside: copy tap-\S+ not archived/g) ?? []).length === refused;
      },
      { what: `${refused} copies logged as not archived` },
    );

    await Promise.all([a.stop(), b.stop()]);
  }, 120_000);
});
