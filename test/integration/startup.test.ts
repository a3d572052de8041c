import { execFile } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureAccount, issueToken } from "../../src/api/auth.js";
import { ConfigError, loadConfig } from "../../src/config.js";
import { createPushSenders } from "../../src/push/leader.js";
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

  it("refuses to start on a push credential it cannot use, naming the setting", async () => {
    const failed = await run(process.execPath, ["--import", "tsx", "src/main.ts"], {
      cwd: root,
      // Were it to start regardless, it would run until stopped.
      timeout: 15_000,
      env: {
        PATH: process.env.PATH ?? "",
        PORT: String(await freePort()),
        DATA_DIR: join(work, "credentials"),
        INGEST: "off",
        PUSH_COMPONENT_SECRET: "s3cret",
        APNS_KEY: join(work, "no-such-dir", "AuthKey_KEY123.p8"),
        APNS_KEY_ID: "KEY123",
        APNS_TEAM_ID: "TEAM456",
        FCM_SERVICE_ACCOUNT: '{"project_id": "p", "private_key": "-----BEGIN',
      },
    }).then(
      () => null,
      (err: { code: number; stderr: string }) => err,
    );
    expect(failed?.code).toBe(1);
    expect(failed?.stderr).toBe(
      [
        "syncside: invalid configuration:",
        "  APNS_KEY: neither an inline PEM nor a file that can be read (ENOENT)",
        "  FCM_SERVICE_ACCOUNT: not valid JSON",
        "",
      ].join("\n"),
    );
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

describe("push credentials, read and checked at start-up", () => {
  const pem = (key: ReturnType<typeof generateKeyPairSync>["privateKey"]) =>
    key.export({ type: "pkcs8", format: "pem" }).toString();
  const ec = pem(generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey);
  const rsa = pem(generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey);
  const account = (change: Record<string, unknown> = {}) =>
    JSON.stringify({
      type: "service_account",
      project_id: "test-project",
      private_key: rsa,
      client_email: "push@test-project.iam.gserviceaccount.com",
      ...change,
    });
  const apnsIds = { APNS_KEY_ID: "KEY123", APNS_TEAM_ID: "TEAM456" };
  const pushConfig = (env: Record<string, string>) =>
    loadConfig({ PUSH_COMPONENT_SECRET: "s3cret", ...env }).push;

  it.each([
    [
      "a malformed PEM as the APNs key",
      {
        ...apnsIds,
        APNS_KEY:
          "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5IGF0IGFsbA==\n-----END PRIVATE KEY-----",
      },
      "APNS_KEY: not a PEM private key (unencrypted)",
    ],
    [
      "an APNs key pasted without its PEM lines",
      { ...apnsIds, APNS_KEY: ec.split("\n").slice(1, -2).join("") },
      "APNS_KEY: neither an inline PEM nor a file that can be read (ENOENT)",
    ],
    [
      "an RSA key as the APNs key",
      { ...apnsIds, APNS_KEY: rsa },
      "APNS_KEY: expected an EC P-256 key (Apple's .p8), got rsa",
    ],
    [
      "an APNS_CA that is no certificate",
      {
        ...apnsIds,
        APNS_KEY: ec,
        APNS_CA: "-----BEGIN CERTIFICATE-----\nbm8=\n-----END CERTIFICATE-----",
      },
      "APNS_CA: not a PEM certificate",
    ],
    [
      "a service account without client_email",
      { FCM_SERVICE_ACCOUNT: account({ client_email: undefined }) },
      "FCM_SERVICE_ACCOUNT: client_email: required",
    ],
    [
      "a service account whose private_key is no RSA key",
      { FCM_SERVICE_ACCOUNT: account({ private_key: ec }) },
      "FCM_SERVICE_ACCOUNT: private_key: expected an RSA key, got ec",
    ],
  ])(
    "refuses %s, naming the setting and not quoting it",
    async (_, env: Record<string, string>, issue) => {
      const error = await createPushSenders(pushConfig(env)).catch((err: unknown) => err);
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).issues).toEqual([issue]);
      for (const secret of [env.APNS_KEY, env.FCM_SERVICE_ACCOUNT]) {
        if (secret) expect((error as ConfigError).message).not.toContain(secret.slice(30, 60));
      }
    },
  );
});
