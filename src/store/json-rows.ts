import { getTableColumns, is, SQL, sql } from "drizzle-orm";
import type { PgTable } from "drizzle-orm/pg-core";

/**
 * A batch of rows as one json parameter, unpacked by json_to_recordset into `table`'s insertable
 * columns in table order, for `db.insert(table).select(rowsOf(table, rows))`. drizzle's VALUES
 * list binds every field as its own parameter; for ingest batches, building and sending those
 * cost more than PostgreSQL spent storing the rows. Omitted fields take the column's default.
 * Not for tables with identity columns: drizzle lists those, and a select cannot say DEFAULT.
 */
export function rowsOf<T extends PgTable>(table: T, rows: T["$inferInsert"][]): SQL {
  // The columns drizzle's insert lists, in its order: all but those generated always.
  const columns = Object.entries(getTableColumns(table)).filter(
    ([, column]) => column.generated === undefined || column.generated.type === "byDefault",
  );
  const picks = columns.map(([key, column]) => {
    const field = sql`r.${sql.identifier(key)}`;
    if (column.default === undefined) return field;
    const fallback = is(column.default, SQL) ? column.default : sql.param(column.default, column);
    return sql`coalesce(${field}, ${fallback})`;
  });
  return sql`select ${sql.join(picks, sql`, `)} from ${recordsOf(
    Object.fromEntries(columns.map(([key, column]) => [key, column.getSQLType()])),
    rows,
  )}`;
}

/**
 * `json_to_recordset($1) as r(…)`: the rows as a relation with the given column types, keyed by
 * their field names, to join a whole batch of keys against a table in one statement.
 */
export function recordsOf(types: Record<string, string>, rows: object[]): SQL {
  const definitions = Object.entries(types).map(
    ([key, type]) => sql`${sql.identifier(key)} ${sql.raw(type)}`,
  );
  return sql`json_to_recordset(${JSON.stringify(rows)}::json) as r(${sql.join(definitions, sql`, `)})`;
}

/** The keys of a table's timestamp columns, which JSON carries as text. */
const timestampKeys = new WeakMap<PgTable, string[]>();

function timestampKeysOf(table: PgTable): string[] {
  let keys = timestampKeys.get(table);
  if (!keys) {
    keys = Object.entries(getTableColumns(table))
      // PgTimestamp is the Date mode; PgTimestampString columns stay text.
      .filter(([, column]) => column.columnType === "PgTimestamp")
      .map(([key]) => key);
    timestampKeys.set(table, keys);
  }
  return keys;
}

/**
 * `json_build_object(…)` of one row of `table` under `alias`, keyed by the field names drizzle
 * selects it with, so a whole result tree can come back as one JSON value: see `fromJsonRow`.
 */
export function jsonRowOf(table: PgTable, alias: string): SQL {
  const pairs = Object.entries(getTableColumns(table)).map(
    ([key, column]) =>
      sql`${sql.raw(`'${key}'`)}, ${sql.identifier(alias)}.${sql.identifier(column.name)}`,
  );
  return sql`json_build_object(${sql.join(pairs, sql`, `)})`;
}

/**
 * A row built by `jsonRowOf` as drizzle's select would return it: timestamps become Dates again
 * (JSON has them as text; bigint columns in number mode arrive as numbers already).
 */
export function fromJsonRow<T extends PgTable>(
  table: T,
  json: Record<string, unknown>,
): T["$inferSelect"] {
  for (const key of timestampKeysOf(table)) {
    const value = json[key];
    if (typeof value === "string") json[key] = new Date(value);
  }
  return json as T["$inferSelect"];
}
