import { randomUUID } from "node:crypto";
import { type Client, xml } from "@xmpp/client";
import { count, eq } from "drizzle-orm";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { sleep } from "../../src/retry.js";
import { readCheckpoint } from "../../src/store/checkpoint.js";
import { accounts } from "../../src/store/schema/accounts.js";
import { checkpoints } from "../../src/store/schema/checkpoints.js";
import { events } from "../../src/store/schema/events.js";
import { openTestStore, type TestStore } from "../helpers/database.js";
import { connectUser, createUser } from "../helpers/ejabberd.js";
import { type RunningIngest, startIngest } from "../helpers/ingest.js";
import { waitFor } from "../helpers/wait.js";

const ejabberd = inject("ejabberd");
/** Wide enough that the late row is written before the settling pass reads, on a slow machine. */
const LOOK_BACK_MS = 5000;

describe("ingest and copies ejabberd archives late", () => {
  let t: TestStore;
  let ingest: RunningIngest | undefined;
  let archive: postgres.Sql;
  beforeAll(async () => {
    t = await openTestStore("postgres");
    archive = postgres(ejabberd.sql, { max: 1, onnotice: () => {} });
  });
  afterAll(async () => {
    await ingest?.stop();
    await archive?.end();
    await t?.close();
  });

  async function messageIdsOf(jid: string): Promise<(string | null)[]> {
    const rows = await t.store.db
      .select({ messageId: events.messageId })
      .from(events)
      .innerJoin(accounts, eq(accounts.id, events.accountId))
      .where(eq(accounts.jid, jid));
    return rows.map((r) => r.messageId);
  }

  /** Two new accounts, and one chat message with the id `id` from the first to the second. */
  async function chatBetweenNewUsers(id: string) {
    const alice = await createUser(ejabberd, "alice");
    const bob = await createUser(ejabberd, "bob");
    const a: Client = await connectUser(ejabberd, alice, "phone");
    try {
      await a.send(xml("message", { to: bob.jid, id, type: "chat" }, xml("body", {}, "hi")));
    } finally {
      await a.stop();
    }
    return { alice, bob };
  }

  it("reads the archive again a look-back after going live, for copies written under an older id", async () => {
    const template = `template-${randomUUID()}`;
    const { alice, bob } = await chatBetweenNewUsers(template);
    const [observer] = ejabberd.observerJid.split("@");
    // The copy as ejabberd archived it for the observer: the shape a late write has too. The
    // sender's session may close before ejabberd's SQL pool has written it.
    const [row] = await waitFor(
      async () => {
        const rows = await archive<
          { xml: string; peer: string; bare_peer: string; kind: string }[]
        >`select xml, peer, bare_peer, kind from archive
          where username = ${observer as string} and xml like ${`%${template}%`}`;
        return rows.length > 0 ? rows : null;
      },
      { what: "the template copy in the observer's archive" },
    );

    ingest = await startIngest(t.store, ejabberd, { INGEST_LOOKBACK: `${LOOK_BACK_MS}ms` });
    await waitFor(async () => (await messageIdsOf(bob.jid)).includes(template), {
      what: "the template message",
    });

    // Live now. A copy routed before presence lands in the archive only now, under an id from
    // before where the catch-up passes read up to: what ejabberd's SQL pool does under load.
    const position = (await readCheckpoint(t.store.db, `observer:${ejabberd.observerJid}`))
      ?.position;
    expect(position).toBeDefined();
    const late = `late-${randomUUID()}`;
    const copyId = /^<message[^>]* id='([^']+)'/.exec(row?.xml ?? "")?.[1];
    expect(copyId).toBeDefined();
    const lateXml = (row?.xml ?? "")
      .replace(`id='${copyId}'`, `id='copy-${late}'`)
      .replaceAll(template, late);
    await archive`
      insert into archive (username, timestamp, peer, bare_peer, xml, txt, kind, nick)
      values (${observer as string}, ${(BigInt(position as string) - BigInt(LOOK_BACK_MS * 250)).toString()}::bigint,
        ${row?.peer ?? ""}, ${row?.bare_peer ?? ""}, ${lateXml}, '', ${row?.kind ?? "chat"}, '')`;

    await waitFor(async () => (await messageIdsOf(bob.jid)).includes(late), {
      what: "the late copy, read by the settling pass",
      timeoutMs: LOOK_BACK_MS + 15_000,
    });
    // Alice's side is written in her own lane, maybe a moment later; once, not twice.
    await waitFor(async () => (await messageIdsOf(alice.jid)).includes(late), {
      what: "alice's side of the late copy",
    });
    expect((await messageIdsOf(alice.jid)).filter((id) => id === late)).toHaveLength(1);
  });

  it("never reads the archive again from its beginning when the catch-up found nothing", async () => {
    // At least one copy in the archive, older than the checkpoint below.
    const before = `before-${randomUUID()}`;
    await chatBetweenNewUsers(before);
    const [observer] = ejabberd.observerJid.split("@");
    await waitFor(
      async () =>
        (
          await archive`select 1 from archive
            where username = ${observer as string} and xml like ${`%${before}%`}`
        ).length > 0,
      { what: "the copy in the observer's archive" },
    );
    const quiet = await openTestStore("postgres");
    const source = `observer:${ejabberd.observerJid}`;
    // A checkpoint past every copy in the shared archive: both passes read nothing.
    await quiet.store.db
      .insert(checkpoints)
      .values({ source, position: String((Date.now() + 600_000) * 1000) });
    const running = await startIngest(quiet.store, ejabberd, {
      INGEST_LOOKBACK: `${LOOK_BACK_MS}ms`,
    });
    try {
      await sleep(LOOK_BACK_MS + 3000);
      // Live copies of other tests may arrive meanwhile; the old copy must not.
      const old = await quiet.store.db
        .select({ n: count() })
        .from(events)
        .where(eq(events.messageId, before));
      expect(old[0]?.n).toBe(0);
    } finally {
      await running.stop();
      await quiet.close();
    }
  });
});
