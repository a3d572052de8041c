import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Client, xml } from "@xmpp/client";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ensureAccount, issueToken } from "../../src/api/auth.js";
import { openDb, type Store } from "../../src/store/db.js";
import { expectContract } from "../helpers/contract.js";
import { createTestDatabase, type TestDatabase } from "../helpers/database.js";
import { connectUser, createUser, type TestUser } from "../helpers/ejabberd.js";
import { freePort } from "../helpers/private-postgres.js";
import { type SidecarProcess, sidecarProcess } from "../helpers/sidecar-process.js";
import { waitFor } from "../helpers/wait.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

interface IngestStatus {
  role: string;
  observer_connected: boolean;
  catching_up: boolean;
  events_written: number;
}
interface SyncBody {
  conversations: { peer: string; messages: { id: string; body: string | null }[] }[];
}

describe("two sidecar processes on one database", () => {
  const ejabberd = inject("ejabberd");
  let database: TestDatabase;
  let store: Store;
  let work: string;
  let alice: TestUser;
  let bob: TestUser;
  let aliceClient: Client | null = null;
  let adminToken: string;
  let opsJid: string;
  const sidecars: SidecarProcess[] = [];

  beforeAll(async () => {
    database = await createTestDatabase();
    work = await mkdtemp(join(tmpdir(), "syncside-failover-"));
    [alice, bob] = await Promise.all([createUser(ejabberd, "alice"), createUser(ejabberd, "bob")]);
    const run = randomBytes(4).toString("hex");
    opsJid = `ops-${run}@x`;
    for (const name of ["a", "b"]) {
      sidecars.push(
        sidecarProcess({
          root,
          port: await freePort(),
          logFile: join(work, `syncside-${name}.log`),
          env: {
            DATABASE_URL: database.url,
            XMPP_SERVICE: ejabberd.service,
            XMPP_DOMAIN: ejabberd.domain,
            OBSERVER_JID: ejabberd.observerJid,
            OBSERVER_PASSWORD: ejabberd.observerPassword,
            // One observer session per process, apart from every other test's.
            OBSERVER_RESOURCE: `failover-${run}-${name}`,
            ADMIN_JIDS: opsJid,
            LOG_LEVEL: "info",
          },
        }),
      );
    }
  });

  afterAll(async () => {
    await aliceClient?.stop().catch(() => {});
    await Promise.all(sidecars.map((s) => s.dispose()));
    await store?.close();
    await database?.drop();
    await rm(work, { recursive: true, force: true });
  });

  async function get<T>(sidecar: SidecarProcess, path: string): Promise<T> {
    const res = await fetch(`http://127.0.0.1:${sidecar.port}${path}`, {
      headers: { authorization: `Bearer ${adminToken}` },
      signal: AbortSignal.timeout(5000),
    });
    expect(res.status, await res.clone().text()).toBe(200);
    return expectContract<T>(res, "GET", path);
  }

  const ingestOf = (sidecar: SidecarProcess) => get<IngestStatus>(sidecar, "/v1/admin/ingest");

  /** The ids of bob's messages from alice, as the sidecar's API shows them. */
  async function bobSees(sidecar: SidecarProcess): Promise<string[]> {
    const body = await get<SyncBody>(
      sidecar,
      `/v1/admin/accounts/${encodeURIComponent(bob.jid)}/sync?messages=200`,
    ).catch(() => null);
    const chat = body?.conversations.find((c) => c.peer === alice.jid);
    return chat?.messages.map((m) => m.id) ?? [];
  }

  async function send(id: string, text: string): Promise<void> {
    aliceClient ??= await connectUser(ejabberd, alice);
    await aliceClient.send(
      xml("message", { to: bob.jid, id, type: "chat" }, xml("body", {}, text)),
    );
  }

  /** waitFor, failing with both processes' last log lines, which say why. */
  async function until<T>(check: () => Promise<T>, what: string, timeoutMs = 30_000) {
    return waitFor(check, { timeoutMs, intervalMs: 100, what }).catch(async (err: Error) => {
      const tails = await Promise.all(sidecars.map((s) => s.logTail(40)));
      throw new Error(`${err.message}\n${tails.join("\n----\n")}`);
    });
  }

  it("ingests in exactly one, serves the API from both, and fails over after kill -9 of the leader", async () => {
    await Promise.all(sidecars.map((s) => s.start()));
    store = await openDb({ url: database.url, dataDir: "memory://" });
    const accountId = await ensureAccount(store.db, opsJid);
    adminToken = (
      await issueToken(store.db, {
        accountId,
        scope: "admin",
        label: "failover test",
        ttlMs: 3_600_000,
        now: new Date(),
      })
    ).token;

    // Exactly one leader: the other waits on the advisory lock.
    const roles = await until(async () => {
      const statuses = await Promise.all(sidecars.map(ingestOf));
      const sorted = statuses.map((s) => s.role).sort();
      return sorted[0] === "leader" && sorted[1] === "standby" ? statuses : null;
    }, "one leader and one standby");
    const leaderIndex = roles.findIndex((s) => s.role === "leader");
    const leader = sidecars[leaderIndex] as SidecarProcess;
    const standby = sidecars[1 - leaderIndex] as SidecarProcess;
    expect(roles[leaderIndex]).toMatchObject({ observer_connected: true });
    expect(roles[1 - leaderIndex]).toMatchObject({
      role: "standby",
      observer_connected: false,
      events_written: 0,
    });
    for (const sidecar of sidecars) expect((await sidecar.readyz()).status).toBe(200);

    // The leader replays the shared observer archive first; "before" comes behind it.
    await until(
      async () => {
        const s = await ingestOf(leader);
        return s.observer_connected && !s.catching_up;
      },
      "the leader to catch up",
      120_000,
    );
    // The standby answers from what the leader wrote.
    await send("before", "before the crash");
    await until(
      async () => (await bobSees(standby)).includes("before"),
      "the standby to show the leader's write",
      15_000,
    );
    expect((await ingestOf(standby)).events_written).toBe(0);

    await leader.kill9();
    const killedAt = Date.now();
    // PostgreSQL frees a dead session's lock at once; the standby asks for it every 2 s.
    await until(async () => (await ingestOf(standby)).role === "leader", "the standby to lead");
    expect(Date.now() - killedAt, "ms from kill -9 to a new leader").toBeLessThan(10_000);
    await until(async () => {
      const s = await ingestOf(standby);
      return s.observer_connected && !s.catching_up;
    }, "the new leader to connect and catch up");
    expect((await standby.readyz()).status).toBe(200);

    await send("after", "after the crash");
    await until(
      async () => (await bobSees(standby)).includes("after"),
      "the new leader to ingest a message sent after the crash",
      15_000,
    );
    // Nothing lost, nothing twice, though the new leader read the archive again.
    expect(await bobSees(standby)).toEqual(["before", "after"]);
    // Alice's side of "after" is written in her own lane, maybe a moment after bob's.
    await until(
      async () => (await ingestOf(standby)).events_written >= 2,
      "the new leader's writes of both sides",
    );
  }, 180_000);
});
