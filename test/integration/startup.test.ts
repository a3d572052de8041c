import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureAccount, issueToken } from "../../src/api/auth.js";
import { DataDirInUse, openDb } from "../../src/store/db.js";
import {
  freePort,
  type PrivatePostgres,
  startPrivatePostgres,
} from "../helpers/private-postgres.js";
import { type SidecarProcess, sidecarProcess } from "../helpers/sidecar-process.js";
import { waitFor } from "../helpers/wait.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const run = promisify(execFile);

describe("syncside as a process: start-up and shutdown", () => {
  let work: string;
  let pg: PrivatePostgres;
  let sidecar: SidecarProcess;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "syncside-startup-"));
    pg = await startPrivatePostgres();
  });
  afterAll(async () => {
    await sidecar?.dispose();
    await pg?.destroy();
    await rm(work, { recursive: true, force: true });
  });

  it("waits for a database that is down, answering /readyz 503 meanwhile, then stops cleanly on SIGTERM", async () => {
    await pg.stop();
    sidecar = sidecarProcess({
      root,
      port: await freePort(),
      logFile: join(work, "syncside.log"),
      env: { DATABASE_URL: pg.url, INGEST: "off", LOG_LEVEL: "info" },
    });
    await sidecar.start({ waitReady: false });
    const waiting = await waitFor(() => sidecar.readyz().catch(() => null), {
      timeoutMs: 30_000,
      what: "/readyz answers",
    });
    expect(waiting).toEqual({
      status: 503,
      body: { status: "not_ready", checks: { database: "starting", ingest: "disabled" } },
    });

    await pg.start();
    await waitFor(async () => (await sidecar.readyz()).status === 200, {
      timeoutMs: 30_000,
      what: "ready after the database came up",
    });
    expect((await sidecar.readyz()).body).toEqual({
      status: "ready",
      checks: { database: "ok", ingest: "disabled" },
    });
    expect(await sidecar.logTail()).toContain("database not ready, retrying");

    const stopping = Date.now();
    await sidecar.stop();
    expect(Date.now() - stopping).toBeLessThan(10_000);
    const log = await readFile(join(work, "syncside.log"), "utf8");
    expect(log).toMatch(/"msg":"stopped"[\s\S]*=== exit code=0 signal=null/);
  });

  it("answers held long-polls at once when it stops, rather than hold the stop for their wait", async () => {
    sidecar = sidecarProcess({
      root,
      port: await freePort(),
      logFile: join(work, "long-poll.log"),
      env: { DATABASE_URL: pg.url, INGEST: "off", LOG_LEVEL: "info" },
    });
    await sidecar.start();
    const store = await openDb({ url: pg.url, dataDir: "memory://" });
    const { token } = await issueToken(store.db, {
      accountId: await ensureAccount(store.db, "poller@example.org"),
      scope: "account",
      label: "shutdown test",
      ttlMs: 3_600_000,
      now: new Date(),
    });
    await store.close();
    const base = `http://127.0.0.1:${sidecar.port}`;
    const headers = { authorization: `Bearer ${token}` };
    const first = (await (await fetch(`${base}/v1/sync`, { headers })).json()) as {
      position: string;
    };
    const held = fetch(`${base}/v1/sync?since=${first.position}&wait=30`, { headers });
    await waitFor(
      async () =>
        (await (await fetch(`${base}/metrics`)).text()).includes("syncside_sync_long_polls_open 1"),
      { what: "the long-poll held" },
    );

    const stopping = Date.now();
    await sidecar.stop();
    expect(Date.now() - stopping).toBeLessThan(10_000);
    const answer = await held;
    expect(answer.status).toBe(200);
    // Nothing changed: the same position, to call again (another replica, or this one back).
    expect(await answer.json()).toMatchObject({ position: first.position, conversations: [] });
  });

  it("refuses to open an embedded database another process has open, and takes over one left by a killed process", async () => {
    const dataDir = join(work, "embedded");
    const env = { DATA_DIR: dataDir, INGEST: "off", LOG_LEVEL: "info" };
    sidecar = sidecarProcess({
      root,
      port: await freePort(),
      logFile: join(work, "embedded.log"),
      env,
    });
    await sidecar.start();
    const second = await run(process.execPath, ["--import", "tsx", "src/main.ts"], {
      cwd: root,
      env: { PATH: process.env.PATH ?? "", PORT: String(await freePort()), ...env },
    }).then(
      () => null,
      (err: { code: number; stderr: string }) => err,
    );
    expect(second?.code).toBe(1);
    expect(second?.stderr).toBe(
      `syncside: the embedded database in ${dataDir} is in use by another syncside (its lock, syncside.lock, is kept fresh): stop that one, or give this one another DATA_DIR\n`,
    );
    // Within one process too (a second store on the directory).
    await expect(openDb({ url: undefined, dataDir })).rejects.toBeInstanceOf(DataDirInUse);
    // Killed, it leaves its lock behind, no longer kept fresh: the next process takes it over.
    await sidecar.kill9();
    await sidecar.start();
    expect((await sidecar.readyz()).status).toBe(200);
    await sidecar.stop();
  });

  it("refuses to start on bad configuration, naming each bad variable on its own line", async () => {
    const failed = await run(process.execPath, ["--import", "tsx", "src/main.ts"], {
      cwd: root,
      env: { PATH: process.env.PATH ?? "", PORT: "eighty", CALL_RING_TIMEOUT: "soon" },
    }).then(
      () => null,
      (err: { code: number; stderr: string }) => err,
    );
    expect(failed?.code).toBe(1);
    expect(failed?.stderr).toBe(
      [
        "syncside: invalid configuration:",
        "  PORT: expected a number",
        '  CALL_RING_TIMEOUT: expected a duration like 90s, 15m, 4h or 30d, got "soon"',
        "",
      ].join("\n"),
    );
  });
});
