import { fillPlaceholders, type SQL } from "drizzle-orm";
import { PgDialect } from "drizzle-orm/pg-core";

/**
 * A statement built once — the query builder's work done a single time — and run many times with
 * `Store.run`, its `sql.placeholder()`s filled per run. For hot reads, where building and walking
 * the SQL tree on every request costs more than PostgreSQL spends answering.
 */
export interface CompiledQuery {
  readonly text: string;
  readonly params: readonly unknown[];
}

const dialect = new PgDialect();

export function compile(query: SQL): CompiledQuery {
  const { sql, params } = dialect.sqlToQuery(query);
  return { text: sql, params };
}

/** The driver parameters of one run: placeholders filled (and encoded by their column). */
export function parametersOf(query: CompiledQuery, values: Record<string, unknown>): unknown[] {
  return fillPlaceholders([...query.params], values);
}
