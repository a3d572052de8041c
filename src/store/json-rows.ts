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
