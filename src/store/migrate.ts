import { join } from "node:path";
import type { PGlite } from "@electric-sql/pglite";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import { migrate as migratePostgres } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import { packageRoot } from "../package-root.js";

/** Any fixed number: every syncside instance agrees on it, nothing else uses it. */
const MIGRATION_LOCK = 0x5e_c5_1d_e0;

/** The committed drizzle/ folder. */
export function migrationsFolder(): string {
  return join(packageRoot(), "drizzle");
}

/**
 * Applies pending migrations on a connection of its own, under an advisory lock, so that
 * instances starting together cannot race (drizzle's migrator takes no lock itself).
 */
export async function migratePostgresUrl(url: string): Promise<void> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await sql`select pg_advisory_lock(${MIGRATION_LOCK})`;
    await migratePostgres(drizzlePostgres(sql), { migrationsFolder: migrationsFolder() });
    await sql`select pg_advisory_unlock(${MIGRATION_LOCK})`;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

export async function migratePgliteInstance(pg: PGlite): Promise<void> {
  await migratePglite(drizzlePglite(pg), { migrationsFolder: migrationsFolder() });
}
