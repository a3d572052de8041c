import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/postgres-js";
import { migrate } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import { describe, expect, it } from "vitest";
import { queryRows } from "../../src/store/db.js";
import { migratePostgresUrl, migrationsFolder } from "../../src/store/migrate.js";
import { createTestDatabase, openTestStore } from "../helpers/database.js";

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

describe("upgrading a PostgreSQL store", () => {
  /** A copy of drizzle/ whose journal stops before migration `tag`. */
  function migrationsBefore(tag: string): string {
    const folder = mkdtempSync(join(tmpdir(), "syncside-migrations-"));
    cpSync(migrationsFolder(), folder, { recursive: true });
    const journalPath = join(folder, "meta", "_journal.json");
    const journal = JSON.parse(readFileSync(journalPath, "utf8"));
    const at = journal.entries.findIndex((e: { tag: string }) => e.tag === tag);
    expect(at).toBeGreaterThan(0);
    journal.entries = journal.entries.slice(0, at);
    writeFileSync(journalPath, JSON.stringify(journal));
    return folder;
  }

  it("0008 reads up to the last reset's time and counts unread messages by it", async () => {
    const database = await createTestDatabase();
    const client = postgres(database.url, { max: 1, onnotice: () => {} });
    const folder = migrationsBefore("0008_read_horizon_sent_order");
    try {
      await migrate(drizzle(client), { migrationsFolder: folder });
      const at = (minute: number) => `2026-11-26T08:${String(minute).padStart(2, "0")}:00Z`;
      // alice read bob's "a" (her marker, seq 2); "b" came after; "c", sent before her marker,
      // was written last and counted by the old rule. carol's chat was never read.
      await client.unsafe(`
        insert into accounts (id, jid, last_seq) overriding system value values (1, 'alice@example.org', 5);
        insert into conversations (account_id, id, peer_jid, version, last_event_seq,
          unread_count, read_seq) overriding system value
          values (1, 1, 'bob@example.org', 4, 4, 2, 2), (1, 2, 'carol@example.org', 5, 5, 1, 0);
        insert into events (account_id, seq, conversation_id, kind, direction, sent_at, dedupe_key)
          values (1, 1, 1, 'message', 'in', '${at(1)}', 'k1'),
            (1, 2, 1, 'displayed', 'out', '${at(2)}', 'k2'),
            (1, 3, 1, 'message', 'in', '${at(3)}', 'k3'),
            (1, 4, 1, 'message', 'in', '${at(0)}', 'k4'),
            (1, 5, 2, 'message', 'in', '${at(5)}', 'k5');
        insert into messages (account_id, conversation_id, direction, message_id, sent_at,
          created_seq, seq)
          values (1, 1, 'in', 'a', '${at(1)}', 1, 1), (1, 1, 'in', 'b', '${at(3)}', 3, 3),
            (1, 1, 'in', 'c', '${at(0)}', 4, 4), (1, 2, 'in', 'd', '${at(5)}', 5, 5);
      `);
      await migratePostgresUrl(database.url);
      const rows = await client<{ id: string; read_at: number | null; unread_count: number }[]>`
        select id, (extract(epoch from read_at) * 1000)::float8 as read_at, unread_count
        from conversations order by id`;
      expect(rows.map((r) => [Number(r.id), r.read_at, r.unread_count])).toEqual([
        [1, Date.parse(at(2)), 1],
        [2, null, 1],
      ]);
    } finally {
      await client.end();
      rmSync(folder, { recursive: true, force: true });
      await database.drop();
    }
  });

  it("0011 lower-cases APNs tokens, keeping of two spellings of one token the one registered last", async () => {
    const database = await createTestDatabase();
    const client = postgres(database.url, { max: 1, onnotice: () => {} });
    const folder = migrationsBefore("0011_apns_tokens_lower_case");
    try {
      await migrate(drizzle(client), { migrationsFolder: folder });
      const device = (id: string, account: number, platform: string, token: string, at: string) =>
        `('${id}', ${account}, '${platform}', '${token}', 'AB12', 'app', 'production', 'k', 'a',
          'node-${id}', 'h', '${at}')`;
      await client.unsafe(`
        insert into push_devices (id, account_id, platform, token, voip_token, app_id,
          environment, p256dh, auth, node, secret_hash, registered_at) values
          ${device("old", 1, "apns", "ABCDEF", "2026-01-01T00:00:00Z")},
          ${device("new", 1, "apns", "abcdef", "2026-02-01T00:00:00Z")},
          ${device("other-account", 2, "apns", "ABCDEF", "2026-01-01T00:00:00Z")},
          ${device("fcm", 1, "fcm", "Fcm:Token", "2026-01-01T00:00:00Z")};
        insert into push_deliveries (device_id, call_id, account_id)
          values ('old', 'c1', 1), ('new', 'c2', 1);
      `);
      await migratePostgresUrl(database.url);
      const devices = await client<{ id: string; token: string; voip_token: string | null }[]>`
        select id, token, voip_token from push_devices order by id`;
      expect(devices.map((d) => [d.id, d.token, d.voip_token])).toEqual([
        ["fcm", "Fcm:Token", "AB12"],
        ["new", "abcdef", "ab12"],
        ["other-account", "abcdef", "ab12"],
      ]);
      const deliveries = await client<{ device_id: string }[]>`
        select device_id from push_deliveries order by device_id`;
      expect(deliveries.map((d) => d.device_id)).toEqual(["new"]);
    } finally {
      await client.end();
      rmSync(folder, { recursive: true, force: true });
      await database.drop();
    }
  });

  it("0009 forgets migration targets too long to be a session id, then indexes the rest", async () => {
    const database = await createTestDatabase();
    const client = postgres(database.url, { max: 1, onnotice: () => {} });
    const folder = migrationsBefore("0009_calls_migrated_to");
    try {
      await migrate(drizzle(client), { migrationsFolder: folder });
      // Longer than a btree entry may be: the index could not be built over it.
      const long = "x".repeat(3000);
      await client.unsafe(`
        insert into calls (account_id, call_id, conversation_id, peer_jid, direction, state,
          updated_at, migrated_to, seq)
          values (1, 'a', 1, 'bob@example.org', 'in', 'finished', now(), '${long}', 1),
            (1, 'b', 1, 'bob@example.org', 'in', 'finished', now(), 'c', 2);
      `);
      await migratePostgresUrl(database.url);
      const rows = await client<{ call_id: string; migrated_to: string | null }[]>`
        select call_id, migrated_to from calls order by call_id`;
      expect(rows.map((r) => [r.call_id, r.migrated_to])).toEqual([
        ["a", null],
        ["b", "c"],
      ]);
    } finally {
      await client.end();
      rmSync(folder, { recursive: true, force: true });
      await database.drop();
    }
  });
});
