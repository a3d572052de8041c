import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { waitFor } from "./wait.js";

/** syncside as a real process (`node --import tsx src/main.ts`), so a test can kill -9 it. */
export interface SidecarProcess {
  readonly port: number;
  /** starts a new process (the previous one must be gone) and, unless told not to, waits until ready */
  start(options?: { waitReady?: boolean }): Promise<void>;
  /** SIGKILL: no shutdown code runs, as in a crash or an OOM kill */
  kill9(): Promise<void>;
  /** SIGTERM and wait: the graceful path */
  stop(): Promise<void>;
  readyz(): Promise<{ status: number; body: unknown }>;
  logTail(lines?: number): Promise<string>;
  /** kills the process if it still runs and closes the log */
  dispose(): Promise<void>;
}

export interface SidecarOptions {
  root: string;
  env: Record<string, string>;
  port: number;
  logFile: string;
  readyTimeoutMs?: number;
}

export function sidecarProcess(o: SidecarOptions): SidecarProcess {
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  // Every incarnation appends to one file, so a failure shows the whole story in order.
  const log = createWriteStream(o.logFile, { flags: "a" });

  const readyz = async () => {
    const res = await fetch(`http://127.0.0.1:${o.port}/readyz`, {
      signal: AbortSignal.timeout(2000),
    });
    return { status: res.status, body: await res.json().catch(() => null) };
  };

  const waitExit = async () => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("syncside did not exit within 15 s")), 15_000);
    });
    try {
      await Promise.race([exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  };

  return {
    port: o.port,
    readyz,
    async start({ waitReady = true } = {}) {
      if (child) throw new Error("syncside is already running");
      log.write(`\n=== start ${new Date().toISOString()}\n`);
      const proc = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
        cwd: o.root,
        env: {
          PATH: process.env.PATH ?? "",
          HOST: "127.0.0.1",
          PORT: String(o.port),
          ...o.env,
        },
        stdio: ["ignore", "pipe", "pipe"],
      });
      child = proc;
      proc.stdout?.pipe(log, { end: false });
      proc.stderr?.pipe(log, { end: false });
      exited = new Promise<void>((resolve) =>
        proc.once("exit", (code, signal) => {
          log.write(`=== exit code=${code} signal=${signal} ${new Date().toISOString()}\n`);
          if (child === proc) child = null;
          resolve();
        }),
      );
      if (!waitReady) return;
      await waitFor(async () => child !== proc || (await readyz()).status === 200, {
        timeoutMs: o.readyTimeoutMs ?? 60_000,
        intervalMs: 100,
        what: "syncside /readyz",
      });
      if (child !== proc) throw new Error(`syncside exited while starting; see ${o.logFile}`);
    },
    async kill9() {
      child?.kill("SIGKILL");
      await waitExit();
    },
    async stop() {
      child?.kill("SIGTERM");
      await waitExit();
    },
    async dispose() {
      child?.kill("SIGKILL");
      await waitExit().catch(() => {});
      await new Promise<void>((resolve) => log.end(() => resolve()));
    },
    async logTail(lines = 80) {
      const text = await readFile(o.logFile, "utf8").catch(() => "");
      return text.split("\n").slice(-lines).join("\n");
    },
  };
}
