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

/** How a row of a table travels as JSON: its fields in column order, and which are timestamps. */
interface JsonLayout {
  keys: string[];
  /** PgTimestamp is the Date mode; PgTimestampString columns stay text. */
  timestamps: boolean[];
}

const layouts = new WeakMap<PgTable, JsonLayout>();

function layoutOf(table: PgTable): JsonLayout {
  let layout = layouts.get(table);
  if (!layout) {
    const columns = Object.entries(getTableColumns(table));
    layout = {
      keys: columns.map(([key]) => key),
      timestamps: columns.map(([, column]) => column.columnType === "PgTimestamp"),
    };
    layouts.set(table, layout);
  }
  return layout;
}

/**
 * One row of `table` under `alias` as a JSON array of its columns in table order, so a whole
 * result tree can come back as one JSON value: see `fromJsonRow`. An array, not an object:
 * PostgreSQL builds it in about half the time, which shows when a sync carries 1000 messages.
 */
export function jsonRowOf(table: PgTable, alias: string): SQL {
  const fields = Object.values(getTableColumns(table)).map(
    (column) => sql`${sql.identifier(alias)}.${sql.identifier(column.name)}`,
  );
  return sql`json_build_array(${sql.join(fields, sql`, `)})`;
}

/**
 * A row built by `jsonRowOf` as drizzle's select would return it: keyed by field name, with
 * timestamps as Dates again (JSON has them as text; bigint columns in number mode arrive as
 * numbers already).
 */
export function fromJsonRow<T extends PgTable>(table: T, json: unknown[]): T["$inferSelect"] {
  const { keys, timestamps } = layoutOf(table);
  const row: Record<string, unknown> = {};
  for (let i = 0; i < keys.length; i++) {
    const value = json[i];
    row[keys[i] as string] = timestamps[i] && typeof value === "string" ? new Date(value) : value;
  }
  return row as T["$inferSelect"];
}
