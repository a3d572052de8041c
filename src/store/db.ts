import { randomBytes } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { Socket } from "node:net";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { fillPlaceholders, is, type Query, SQL } from "drizzle-orm";
import { type PgDatabase, PgDialect, type PgQueryResultHKT } from "drizzle-orm/pg-core";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { drizzle as drizzlePostgres, PostgresJsSession } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import lockfile from "proper-lockfile";
import { migratePgliteInstance, migratePostgresUrl } from "./migrate.js";

export type Db = PgDatabase<PgQueryResultHKT>;
/** A transaction handle: the same query builder, bound to one transaction. */
export type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];

export interface Lock {
  /** Resolves when the connection holding the lock is lost (the lock went with it). */
  readonly lost: Promise<void>;
  release(): Promise<void>;
}

export interface Store {
  readonly db: Db;
  readonly driver: "postgres" | "pglite";
  /** On PostgreSQL: how syncside uses the database now, read on a connection of its own */
  databaseUse(): Promise<DatabaseUse | null>;
  ping(): Promise<void>;
  /** Applies the committed migrations (see migrate.ts). */
  migrate(): Promise<void>;
  /** Subscribes to NOTIFY on a channel; returns the unsubscribe function. */
  listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>;
  /** Session-level advisory lock on a connection of its own, or null when another holds it. */
  tryLock(key: number): Promise<Lock | null>;
  close(): Promise<void>;
}

/** How syncside uses its PostgreSQL database, from pg_stat_activity. */
export interface DatabaseUse {
  /** connections of every syncside process (pools, listeners, lock and probe sessions) */
  syncside: number;
  /** this process's pool: connections running a statement or in a transaction */
  busy: number;
  /** this process's pool: connections open and idle */
  idle: number;
  /** this process's pool: the most connections it opens */
  max: number;
}

export interface OpenDbOptions {
  /** postgres://… or undefined for embedded PGlite */
  url: string | undefined;
  /** PGlite data directory, or "memory://" */
  dataDir: string;
  maxConnections?: number;
}

export async function openDb(options: OpenDbOptions): Promise<Store> {
  return options.url
    ? openPostgres(options.url, options.maxConnections ?? 10)
    : openPglite(options.dataDir);
}

/**
 * Works around porsager/postgres#1208 (3.4.9): when a connection closes under a transaction,
 * the driver writes its own ROLLBACK after it has dropped the socket, from a setImmediate, and
 * the uncaught TypeError ends the process — every PostgreSQL restart did. Reporting the loss
 * as an error first rejects the queries in flight while the socket is still there to absorb
 * that write; the close follows a moment later and the driver reconnects as usual. (With TLS
 * the driver swaps in its own TLSSocket after the handshake, so this covers plain TCP only.)
 */
class DeferredCloseSocket extends Socket {
  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event !== "close") return super.emit(event, ...args);
    const lost = Object.assign(new Error("connection to PostgreSQL lost"), {
      code: "CONNECTION_CLOSED",
    });
    super.emit("error", lost);
    setTimeout(() => super.emit("close", ...args), 10);
    return true;
  }
}

type SocketOptions = { host: string[]; port: number[]; path?: string | false };

/** postgres.js's `socket` option: it writes the startup message at once; the socket queues it. */
function deferredCloseSocket(options: SocketOptions): Socket {
  const socket = new DeferredCloseSocket();
  if (options.path) socket.connect(options.path);
  else socket.connect(options.port[0] ?? 5432, options.host[0] ?? "localhost");
  // Statements sent together would otherwise wait on Nagle + delayed ACK (~40 ms each time).
  socket.setNoDelay(true);
  return socket;
}

function openPostgres(url: string, max: number): Store {
  // Every session is named for syncside and this pool, so pg_stat_activity tells them apart.
  const instance = randomBytes(4).toString("hex");
  const applicationName = `syncside ${instance}`;
  // Timestamps come back as Date and bigint columns as numbers (drizzle maps mode "number").
  const options = {
    max,
    // A documented option of postgres.js that its type definitions lack.
    socket: deferredCloseSocket,
    onnotice: () => {},
    connection: { application_name: applicationName },
  };
  const sql = postgres(url, options);
  const db = drizzlePostgres(sql) as unknown as Db;
  const locks = new Set<() => Promise<void>>();
  // Sessions outside the pool, opened when first needed and named apart: LISTEN holds one (which
  // postgres.js would otherwise open with the pool's name), and the probe must answer even when
  // every pooled connection is busy.
  const aside = new Map<string, postgres.Sql>();
  const client = (role: string) => {
    let session = aside.get(role);
    if (!session) {
      session = postgres(url, {
        ...options,
        max: 1,
        connection: { application_name: `syncside-${role} ${instance}` },
      });
      aside.set(role, session);
    }
    return session;
  };
  return {
    db,
    driver: "postgres",
    async databaseUse() {
      const [row] = await client("probe")<{ n: string; busy: string; idle: string }[]>`
        select count(*) as n,
          count(*) filter (where application_name = ${applicationName}
            and state <> 'idle') as busy,
          count(*) filter (where application_name = ${applicationName}
            and state = 'idle') as idle
        from pg_stat_activity
        where datname = current_database() and application_name like 'syncside%'`;
      if (!row) return null;
      return { syncside: Number(row.n), busy: Number(row.busy), idle: Number(row.idle), max };
    },
    async ping() {
      await sql`select 1`;
    },
    migrate: () => migratePostgresUrl(url),
    async listen(channel, onPayload) {
      const sub = await client("listen").listen(channel, onPayload);
      return () => sub.unlisten();
    },
    async tryLock(key) {
      // A client of its own rather than sql.reserve(): postgres.js 3.4.9 crashes the process
      // (an uncaught TypeError in nextWrite) when a reserved connection is used after its
      // backend died (porsager/postgres#1208), e.g. across a PostgreSQL restart. Its onclose
      // also tells at once that the session, and the lock with it, is gone.
      let lose: () => void = () => {};
      const lost = new Promise<void>((resolve) => {
        lose = resolve;
      });
      const lockSql = postgres(url, {
        max: 1,
        // The lock lives exactly as long as this session: never recycle it.
        idle_timeout: 0,
        max_lifetime: null,
        onnotice: () => {},
        onclose: () => lose(),
        connection: { application_name: `syncside-lock ${instance}` },
      });
      const end = () => lockSql.end({ timeout: 5 }).catch(() => {});
      try {
        const [row] = await lockSql<
          { locked: boolean }[]
        >`select pg_try_advisory_lock(${key}) as locked`;
        if (!row?.locked) {
          await end();
          return null;
        }
      } catch (err) {
        await end();
        throw err;
      }
      locks.add(end);
      let released = false;
      return {
        lost,
        async release() {
          if (released) return;
          released = true;
          locks.delete(end);
          await lockSql`select pg_advisory_unlock(${key})`.catch(() => {});
          await end();
        },
      };
    },
    async close() {
      await Promise.all([...locks].map((end) => end()));
      await Promise.all([sql, ...aside.values()].map((s) => s.end({ timeout: 5 })));
    },
  };
}

/** Another process (here, or in another container on the same volume) has it open. */
export class DataDirInUse extends Error {
  constructor(readonly dataDir: string) {
    super(
      `the embedded database in ${dataDir} is in use by another syncside (its lock, ${LOCK_FILE}, is kept fresh): stop that one, or give this one another DATA_DIR`,
    );
  }
}

const LOCK_FILE = "syncside.lock";
/** A lock not refreshed for this long was left by a process that is gone. */
const LOCK_STALE_MS = 6000;

/**
 * Locks the data directory for this process: PGlite has no lock of its own, and two processes
 * writing one directory (two containers on one volume, too) would corrupt it. The lock is kept
 * fresh while the process lives; one left by a killed process goes stale and is taken over, so a
 * start right after a crash waits up to LOCK_STALE_MS. Returns what releases it.
 */
async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  try {
    return await lockfile.lock(dataDir, {
      lockfilePath: join(dataDir, LOCK_FILE),
      stale: LOCK_STALE_MS,
      update: LOCK_STALE_MS / 4,
      // About 9 s of tries in all: longer than a killed holder's lock takes to go stale.
      retries: { retries: 7, factor: 1.5, minTimeout: 400, maxTimeout: 2000 },
      onCompromised: (err) => {
        // Another process may be writing the directory now: stopping is the only safe move.
        process.stderr.write(`syncside: lost the lock of ${dataDir}: ${err.message}\n`);
        process.exit(1);
      },
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ELOCKED") throw new DataDirInUse(dataDir);
    throw err;
  }
}

async function openPglite(dataDir: string): Promise<Store> {
  const inMemory = dataDir.startsWith("memory://");
  if (!inMemory) await mkdir(dataDir, { recursive: true });
  const unlock = inMemory ? async () => {} : await lockDataDir(dataDir);
  const pg = await PGlite.create(dataDir).catch(async (err: unknown) => {
    await unlock();
    throw err;
  });
  const db = drizzlePglite(pg) as unknown as Db;
  return {
    db,
    driver: "pglite",
    databaseUse: async () => null,
    async ping() {
      await pg.query("select 1");
    },
    migrate: () => migratePgliteInstance(pg),
    async listen(channel, onPayload) {
      const unsubscribe = await pg.listen(channel, onPayload);
      return unsubscribe;
    },
    async tryLock() {
      // An embedded database belongs to this one process: it is always the leader.
      return { lost: new Promise<void>(() => {}), release: async () => {} };
    },
    async close() {
      await pg.close();
      await unlock();
    },
  };
}

/**
 * Raw SQL rows from either driver: postgres.js returns the rows as an array, PGlite an object
 * with `rows`. Only for what the query builder cannot say (locks, NOTIFY, aggregates over CTEs).
 */
export async function queryRows<T>(db: Db | Tx, query: SQL): Promise<T[]> {
  const result = (await db.execute(query)) as unknown;
  if (Array.isArray(result)) return result as T[];
  return ((result as { rows?: T[] }).rows ?? []) as T[];
}

const dialect = new PgDialect();

/**
 * Like queryRows, as a prepared statement. drizzle sends queries unprepared, and postgres.js then
 * has the server describe each one with parameters before it binds it: two round trips, a fresh
 * parse and plan, and no query pipelined behind it. A prepared query is parsed once per
 * connection, then costs one Bind/Execute and pipelines. (The name only marks it as prepared:
 * postgres.js keys statements by their text, and PGlite has no named statements.)
 *
 * A query built once with `compile` skips the builder on every run; `values` fills its
 * `sql.placeholder()`s. Placeholders bypass column encoders: pass timestamps as ISO text.
 */
export async function preparedRows<T>(
  db: Db | Tx,
  name: string,
  query: SQL | Query,
  values: Record<string, unknown> = {},
): Promise<T[]> {
  const result = (await db._.session
    .prepareQuery(is(query, SQL) ? compile(query) : query, undefined, name, false)
    .execute(values)) as unknown;
  if (Array.isArray(result)) return result as T[];
  return ((result as { rows?: T[] }).rows ?? []) as T[];
}

/**
 * Runs a compiled query whose columns are all text (cast them) and returns each row's values
 * as the UTF-8 bytes PostgreSQL sent, in column order: for results handed on to a client
 * without being decoded into strings and encoded again. With postgres.js these are views of
 * the bytes as they came off the socket; PGlite decodes text itself, so its are encoded again.
 */
export async function preparedTextRows(
  db: Db,
  query: Query,
  values: Record<string, unknown>,
): Promise<(Buffer | null)[][]> {
  const session = db._.session;
  if (is(session, PostgresJsSession)) {
    const params = fillPlaceholders(query.params, values) as postgres.ParameterOrJSON<never>[];
    const rows = await session.client.unsafe(query.sql, params, { prepare: true }).raw();
    return rows as unknown as (Buffer | null)[][];
  }
  const rows = await preparedRows<Record<string, string | null>>(db, "text rows", query, values);
  return rows.map((row) => Object.values(row).map((v) => (v === null ? null : Buffer.from(v))));
}

/** A statement's text and parameters, built once: for queries run on every request or batch. */
export function compile(query: SQL): Query {
  return dialect.sqlToQuery(query);
}

/**
 * SQLSTATE classes in which the database refuses what a statement carries: cardinality (21,
 * such as one upsert touching a row twice), data exceptions (22, such as an invalid byte
 * sequence or a date out of range), integrity constraints (23) and program limits (54, such as
 * an index row too large).
 */
const REFUSED_CONTENT = /^(21|22|23|54)[0-9A-Z]{3}$/;

/**
 * Node's own codes for values a statement was built from that it cannot take (a string or
 * buffer too long, an argument out of range). Others of its ERR_ codes, such as a write after
 * the end of a socket, come from a lost connection.
 */
const REFUSED_BY_NODE = new Set([
  "ERR_OUT_OF_RANGE",
  "ERR_INVALID_ARG_TYPE",
  "ERR_INVALID_ARG_VALUE",
  "ERR_STRING_TOO_LONG",
  "ERR_BUFFER_TOO_LARGE",
]);

/**
 * Whether a failed write was refused for what it carried, so that sending it again unchanged
 * would fail again: a SQLSTATE of a class above, or an error thrown in this process by the code
 * that built the statement from its input (no code, or one of REFUSED_BY_NODE). Anything else
 * — a lost connection, a deadlock or serialization failure, a statement timeout or
 * cancellation, too many connections, a full disk, a shutdown, even a missing table or
 * privilege — says nothing about the data and may pass once the database or its operator has
 * recovered. drizzle wraps the driver's error: the chain of causes is searched for a code.
 */
export function isRefusedContent(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" || typeof code === "number") {
      return REFUSED_CONTENT.test(String(code)) || REFUSED_BY_NODE.has(String(code));
    }
  }
  return true;
}
