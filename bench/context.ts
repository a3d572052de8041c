import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDb } from "../src/store/db.js";
import { createTestDatabase, dropDatabase } from "../test/helpers/database.js";
import { type EjabberdInstance, ejabberdScript, instanceAt } from "../test/helpers/ejabberd.js";
import type { BenchContext, BenchDatabase } from "./scenario.js";

/**
 * The bench's own ejabberd: away from the developer's (5222) and the tests' (25200) instances,
 * on its own domain and home, so a bench run never shares accounts or archives with anything.
 */
export function benchInstance(root: string): EjabberdInstance {
  // Its archive lives in PostgreSQL, as production runs it: Mnesia's disc-only MAM table slows
  // with every copy the one observer account holds, which would measure Mnesia, not syncside.
  return instanceAt({
    home: join(root, ".ejabberd", "bench"),
    base: Number(process.env.BENCH_EJABBERD_PORT_BASE ?? 27200),
    domain: "bench.test",
    name: "bench",
  });
}

const sqlDatabaseOf = (i: EjabberdInstance) => new URL(i.sql).pathname.slice(1);

/** What outlives one scenario: the ejabberd instance, started lazily and stopped at the end. */
export class BenchSession {
  private instance: Promise<EjabberdInstance> | null = null;

  constructor(
    private readonly root: string,
    readonly scale: number,
    readonly signal: AbortSignal,
  ) {}

  ejabberd(): Promise<EjabberdInstance> {
    this.instance ??= this.startEjabberd();
    return this.instance;
  }

  private async startEjabberd(): Promise<EjabberdInstance> {
    const instance = benchInstance(this.root);
    progress(`starting ejabberd (${instance.domain}, c2s ${instance.c2sPort})`);
    await ejabberdScript(this.root, instance, "install");
    // A run killed midway may have left its instance and archive behind: start from nothing.
    await ejabberdScript(this.root, instance, "stop").catch(() => {});
    await rm(instance.home, { recursive: true, force: true });
    await dropDatabase(sqlDatabaseOf(instance));
    await ejabberdScript(this.root, instance, "start");
    return instance;
  }

  async close(): Promise<void> {
    if (!this.instance) return;
    const instance = await this.instance.catch(() => null);
    this.instance = null;
    if (!instance) return;
    progress("stopping ejabberd");
    await ejabberdScript(this.root, instance, "stop").catch((err) =>
      progress(`ejabberd did not stop: ${String(err)}`),
    );
    await dropDatabase(sqlDatabaseOf(instance)).catch(() => {});
  }

  /** A context for one scenario; `finish()` runs its cleanups. */
  scenario(scale = this.scale): BenchContext & { finish(): Promise<void> } {
    const cleanups: (() => Promise<void> | void)[] = [];
    const defer = (cleanup: () => Promise<void> | void) => cleanups.push(cleanup);
    return {
      scale,
      sized: (full, min = 1) => Math.max(min, Math.round(full * scale)),
      ejabberd: () => this.ejabberd(),
      async postgres(): Promise<BenchDatabase> {
        const database = await createTestDatabase();
        defer(() => database.drop());
        const store = await openDb({ url: database.url, dataDir: "" });
        defer(() => store.close());
        await store.migrate();
        return { url: database.url, store };
      },
      async pglite(): Promise<BenchDatabase> {
        const dir = await mkdtemp(join(tmpdir(), "syncside-bench-"));
        defer(() => rm(dir, { recursive: true, force: true }));
        const store = await openDb({ url: undefined, dataDir: dir });
        defer(() => store.close());
        await store.migrate();
        return { url: `pglite:${dir}`, store };
      },
      defer,
      progress,
      signal: this.signal,
      async finish() {
        for (const cleanup of cleanups.reverse()) {
          await Promise.resolve()
            .then(cleanup)
            .catch((err) => progress(`cleanup failed: ${String(err)}`));
        }
      },
    };
  }
}

export function progress(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

/** Samples the process's resident set while `fn` runs; returns its result and the peak. */
export async function withPeakRss<T>(
  fn: () => Promise<T>,
): Promise<{ value: T; peakRssMb: number; startRssMb: number }> {
  const start = process.memoryUsage.rss();
  let peak = start;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 20);
  try {
    const value = await fn();
    peak = Math.max(peak, process.memoryUsage.rss());
    return { value, peakRssMb: mb(peak), startRssMb: mb(start) };
  } finally {
    clearInterval(timer);
  }
}

/**
 * CPU time of the whole machine (every process, kernel included) in ms, from /proc/stat; NaN
 * where there is none. Beside process.cpuUsage() it tells this process's share from the rest:
 * on the bench machine, mostly PostgreSQL.
 */
export function machineCpuMs(): number {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "";
    // cpu user nice system idle iowait irq softirq steal …: all but idle and iowait are busy.
    const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const busy = ticks.reduce((sum, t, i) => (i === 3 || i === 4 ? sum : sum + t), 0);
    return (busy * 1000) / CLOCK_TICKS;
  } catch {
    return Number.NaN;
  }
}

/** USER_HZ, the unit of /proc/stat: 100 on every Linux architecture Node runs on. */
const CLOCK_TICKS = 100;

const mb = (bytes: number) => Math.round((bytes / 1024 / 1024) * 10) / 10;
