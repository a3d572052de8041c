import { execFile } from "node:child_process";
import { readdirSync } from "node:fs";
import { chmod, chown, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** A PostgreSQL cluster of its own, so a test may stop and restart it without disturbing others. */
export interface PrivatePostgres {
  url: string;
  port: number;
  dataDir: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  restart(): Promise<void>;
  /** stops the server and deletes its files */
  destroy(): Promise<void>;
  logTail(lines?: number): Promise<string>;
}

/** Debian installs one bin dir per major version; the newest wins. */
function postgresBinDir(): string {
  const versions = readdirSync("/usr/lib/postgresql")
    .filter((v) => /^\d+$/.test(v))
    .sort((a, b) => Number(b) - Number(a));
  if (versions.length === 0) throw new Error("no PostgreSQL under /usr/lib/postgresql");
  return `/usr/lib/postgresql/${versions[0]}/bin`;
}

/** A TCP port nobody listens on right now on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address
          ? resolve(address.port)
          : reject(new Error("no port")),
      );
    });
  });
}

async function idOf(user: string): Promise<{ uid: number; gid: number }> {
  const [uid, gid] = await Promise.all([
    run("id", ["-u", user]).then((r) => Number(r.stdout.trim())),
    run("id", ["-g", user]).then((r) => Number(r.stdout.trim())),
  ]);
  return { uid, gid };
}

/**
 * initdb + pg_ctl as the `postgres` user (initdb refuses root), trust auth, loopback only, in a
 * fresh temporary directory.
 */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const bin = postgresBinDir();
  const root = await mkdtemp(join(tmpdir(), "syncside-pg-"));
  const dataDir = join(root, "data");
  const logFile = join(root, "postgres.log");
  const owner = await idOf("postgres");
  await chown(root, owner.uid, owner.gid);
  await chmod(root, 0o755);
  const asPostgres = (cmd: string, args: string[]) =>
    run("runuser", ["-u", "postgres", "--", join(bin, cmd), ...args], {
      maxBuffer: 16 * 1024 * 1024,
    });

  await asPostgres("initdb", ["-D", dataDir, "-U", "postgres", "-A", "trust", "--no-sync"]);
  const port = await freePort();
  const conf = join(dataDir, "postgresql.conf");
  await writeFile(
    conf,
    `${await readFile(conf, "utf8")}
listen_addresses = '127.0.0.1'
port = ${port}
unix_socket_directories = '${root}'
`,
  );

  let running = false;
  const api: PrivatePostgres = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    async start() {
      await asPostgres("pg_ctl", ["-D", dataDir, "-l", logFile, "-w", "-t", "60", "start"]);
      running = true;
    },
    async stop() {
      if (!running) return;
      await asPostgres("pg_ctl", ["-D", dataDir, "-w", "-t", "60", "-m", "fast", "stop"]);
      running = false;
    },
    async restart() {
      await api.stop();
      await api.start();
    },
    async destroy() {
      await api.stop().catch(() => {});
      await rm(root, { recursive: true, force: true });
    },
    async logTail(lines = 40) {
      const text = await readFile(logFile, "utf8").catch(() => "");
      return text.split("\n").slice(-lines).join("\n");
    },
  };
  try {
    await api.start();
  } catch (err) {
    await rm(root, { recursive: true, force: true });
    throw err;
  }
  return api;
}
