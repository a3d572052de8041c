import { readFileSync } from "node:fs";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { queryRows } from "../../src/store/db.js";
import { migrationsFolder } from "../../src/store/migrate.js";
import { openTestStore } from "../helpers/database.js";

const TABLES = [
  "accounts",
  "calls",
  "checkpoints",
  "conversations",
  "events",
  "messages",
  "push_deliveries",
  "push_devices",
  "store_meta",
  "tokens",
];

describe.each(["postgres", "pglite"] as const)("migrations on %s", (driver) => {
  it("create every table, and applying them again changes nothing", async () => {
    const { store, close } = await openTestStore(driver);
    try {
      const tables = await queryRows<{ table_name: string }>(
        store.db,
        sql`select table_name from information_schema.tables where table_schema = 'public' order by 1`,
      );
      const names = tables.map((r) => r.table_name);
      expect(names).toEqual(TABLES);

      await store.migrate();
      const applied = await queryRows(
        store.db,
        sql`select count(*)::int as n from drizzle.__drizzle_migrations`,
      );
      const journal = JSON.parse(
        readFileSync(join(migrationsFolder(), "meta", "_journal.json"), "utf8"),
      );
      expect(applied).toEqual([{ n: journal.entries.length }]);
    } finally {
      await close();
    }
  });
});
