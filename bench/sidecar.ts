import { type ChildProcess, execFile, spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { ensureAccount, issueToken } from "../src/api/auth.js";
import type { Db } from "../src/store/db.js";
import { checkpoints } from "../src/store/schema/checkpoints.js";
import type { EjabberdInstance } from "../test/helpers/ejabberd.js";
import { freePort } from "../test/helpers/private-postgres.js";
import { waitFor } from "../test/helpers/wait.js";
import { archiveLast, observerSession } from "./archive.js";
import type { BenchDatabase } from "./scenario.js";

const run = promisify(execFile);

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

export interface Sidecar {
  /** the node process itself, for reading its memory in /proc */
  pid: number;
  exited(): boolean;
  /** SIGTERM (graceful shutdown), then SIGKILL after 10 s. */
  stop(): Promise<void>;
}

let build: Promise<void> | null = null;

/**
 * `npm run build`: dist/src/main.js, what `npm start` runs in production. Once per bench run:
 * every scenario that starts a sidecar measures the same build.
 */
export function buildSidecar(): Promise<void> {
  build ??= run(
    process.execPath,
    [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.build.json"],
    { cwd: root },
  ).then(() => undefined);
  return build;
}

/**
 * syncside in a process of its own, configured by env: src/main.ts through tsx, or with `built`
 * the compiled dist/src/main.js as `npm start` runs it (tsx's compiler adds to the process's RSS).
 */
export function startSidecar(env: Record<string, string>, o: { built?: boolean } = {}): Sidecar {
  const args = o.built ? ["dist/src/main.js"] : ["--import", "tsx", "src/main.ts"];
  const child: ChildProcess = spawn(process.execPath, args, {
    cwd: root,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
    // Its log (stdout) shows only when asked for with BENCH_LOG_LEVEL, e.g. info for the access log.
    stdio: ["ignore", process.env.BENCH_LOG_LEVEL ? "inherit" : "ignore", "inherit"],
  });
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.once("exit", () => {
      exited = true;
      resolve();
    }),
  );
  return {
    pid: child.pid ?? -1,
    exited: () => exited,
    async stop() {
      if (exited) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exit;
      clearTimeout(timer);
    },
  };
}

/** The resident set of a process in MB, from /proc/<pid>/status (Linux). */
export async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? Number.NaN);
  return Math.round((kb / 1024) * 10) / 10;
}

/**
 * A ready sidecar — the build `npm start` runs — that ingests from the bench ejabberd into `db`,
 * starting at the end of the observer's archive: what earlier scenarios left there is not what
 * this one measures.
 */
export async function startIngestingSidecar(
  ej: EjabberdInstance,
  db: BenchDatabase,
  o: { probe: string; env?: Record<string, string> },
): Promise<{ sidecar: Sidecar; port: number }> {
  await buildSidecar();
  const probe = await observerSession(ej, o.probe);
  const last = await archiveLast(probe);
  await probe.stop().catch(() => {});
  if (last) {
    await db.store.db
      .insert(checkpoints)
      .values({ source: `observer:${ej.observerJid}`, position: last, updatedAt: new Date() });
  }
  const port = await freePort();
  const sidecar = startSidecar(
    {
      DATABASE_URL: db.url,
      HOST: "127.0.0.1",
      PORT: String(port),
      XMPP_SERVICE: ej.service,
      XMPP_DOMAIN: ej.domain,
      OBSERVER_JID: ej.observerJid,
      OBSERVER_PASSWORD: ej.observerPassword,
      OBSERVER_RESOURCE: "syncside",
      INGEST_LOOKBACK: "1s",
      LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? "warn",
      ...o.env,
    },
    { built: true },
  );
  try {
    await waitFor(
      async () => {
        if (sidecar.exited()) throw new Error("the sidecar exited");
        return (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => null))?.ok;
      },
      { timeoutMs: 120_000, intervalMs: 200, what: "the sidecar to be ready" },
    );
  } catch (err) {
    await sidecar.stop();
    throw err;
  }
  return { sidecar, port };
}

/** A bearer token for the account `jid` in the bench's store, as its phone would hold one. */
export async function phoneToken(db: Db, jid: string): Promise<string> {
  const accountId = await ensureAccount(db, jid);
  const { token } = await issueToken(db, {
    accountId,
    scope: "account",
    label: "bench phone",
    ttlMs: 3_600_000,
    now: new Date(),
  });
  return token;
}
