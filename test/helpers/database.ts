import { randomBytes } from "node:crypto";
import { sql } from "drizzle-orm";
import postgres from "postgres";
import { type Db, openDb, type Store } from "../../src/store/db.js";

/** The test PostgreSQL server; the machine's own, trust auth on loopback. */
export const TEST_PG_ADMIN_URL =
  process.env.TEST_PG_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

export interface TestDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

/** A fresh, empty database of its own; dropped (connections and all) by drop(). */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `syncside_test_${randomBytes(6).toString("hex")}`;
  const admin = postgres(TEST_PG_ADMIN_URL, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(TEST_PG_ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    drop: () => dropDatabase(name),
  };
}

/** Drops a database of the test server, closing its connections first. */
export async function dropDatabase(name: string): Promise<void> {
  const admin = postgres(TEST_PG_ADMIN_URL, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`drop database if exists ${name} with (force)`);
  } finally {
    await admin.end();
  }
}

export interface TestStore {
  store: Store;
  database: TestDatabase | null;
  close(): Promise<void>;
}

/** A migrated store on a fresh PostgreSQL database, or on in-memory PGlite. */
export async function openTestStore(
  driver: "postgres" | "pglite" = "postgres",
): Promise<TestStore> {
  const database = driver === "postgres" ? await createTestDatabase() : null;
  const store = await openDb({ url: database?.url, dataDir: "memory://" });
  await store.migrate();
  return {
    store,
    database,
    async close() {
      await store.close();
      await database?.drop();
    },
  };
}

/**
 * Holds an account's row lock (the lock every ingest batch and settings change takes first) in
 * a transaction of its own until `release()`, as another writer would: writes for that account
 * wait meanwhile. Resolves once the lock is held.
 */
export async function holdAccountRow(db: Db, jid: string): Promise<{ release(): Promise<void> }> {
  let release = () => {};
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  let locked = () => {};
  const isLocked = new Promise<void>((resolve) => {
    locked = resolve;
  });
  const holder = db.transaction(async (tx) => {
    await tx.execute(sql`select id from accounts where jid = ${jid} for update`);
    locked();
    await held;
  });
  await Promise.race([isLocked, holder]);
  return {
    async release() {
      release();
      await holder;
    },
  };
}
