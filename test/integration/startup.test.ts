import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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
        "  PORT: Invalid input: expected number, received NaN",
        '  CALL_RING_TIMEOUT: expected a duration like 90s, 15m, 4h or 30d, got "soon"',
        "",
      ].join("\n"),
    );
  });
});
