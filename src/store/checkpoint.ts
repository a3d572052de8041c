import { eq, or, sql } from "drizzle-orm";
import type { Db, Tx } from "./db.js";
import { checkpoints } from "./schema/checkpoints.js";

/**
 * Ingest may write a batch in several lanes, one transaction each, and each lane advances its own
 * checkpoint row in its own transaction. One lane keeps the source's name; lane i of n is
 * `source#i/n`, so rows left by a different lane count are told apart from the current ones.
 */
export function laneSource(source: string, lane: number, lanes: number): string {
  return lanes === 1 ? source : `${source}#${lane}/${lanes}`;
}

/** Moves a lane's checkpoint forward, never back: a batch may end on an older archive id. */
export async function advanceCheckpoint(
  tx: Tx,
  checkpoint: { source: string; position: string },
): Promise<void> {
  // Archive ids are decimal strings beyond 2^53: compared by length, then bytes, a row-value
  // comparison the builder has no form for.
  await tx
    .insert(checkpoints)
    .values({ source: checkpoint.source, position: checkpoint.position, updatedAt: new Date() })
    .onConflictDoUpdate({
      target: checkpoints.source,
      set: { position: sql`excluded.position`, updatedAt: sql`excluded.updated_at` },
      setWhere: sql`(length(${checkpoints.position}), ${checkpoints.position} collate "C")
        < (length(excluded.position), excluded.position collate "C")`,
    })
    .prepare("advance_checkpoint")
    .execute();
}

/** Numeric comparison of decimal archive ids (they exceed 2^53, so compare as strings). */
export function compareArchiveIds(a: string, b: string): number {
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

interface LaneRow {
  lane: number;
  lanes: number;
  position: string;
  updatedAt: Date;
}

/** The item whose archive id is lowest, or undefined for none. */
export function lowestArchiveId<T>(items: Iterable<T>, idOf: (item: T) => string): T | undefined {
  let lowest: T | undefined;
  for (const item of items) {
    if (lowest === undefined || compareArchiveIds(idOf(item), idOf(lowest)) < 0) lowest = item;
  }
  return lowest;
}

function sourceRows(db: Db, source: string) {
  return db
    .select()
    .from(checkpoints)
    .where(
      // starts_with, not LIKE: a JID may contain LIKE's wildcards.
      or(eq(checkpoints.source, source), sql`starts_with(${checkpoints.source}, ${`${source}#`})`),
    );
}

/** Which lane of how many a row of the source is; null for a row not named as a lane. */
function laneOfRow(
  source: string,
  row: { source: string },
): { lane: number; lanes: number } | null {
  if (row.source === source) return { lane: 0, lanes: 1 };
  const m = /^(\d+)\/(\d+)$/.exec(row.source.slice(source.length + 1));
  return m ? { lane: Number(m[1]), lanes: Number(m[2]) } : null;
}

/**
 * Where ingest has durably read up to: the lowest position over the source's lane rows, or null
 * (read from the start) unless every lane of some lane count has a row. A lane without a row has
 * written nothing yet, so the others' positions alone would skip its copies.
 */
export async function readCheckpoint(
  db: Db,
  source: string,
): Promise<{ position: string; updatedAt: Date } | null> {
  const rows: LaneRow[] = (await sourceRows(db, source)).flatMap((row) => {
    const lane = laneOfRow(source, row);
    return lane ? [{ ...lane, position: row.position, updatedAt: row.updatedAt }] : [];
  });
  const complete = [...new Set(rows.map((r) => r.lanes))].some((lanes) => {
    const present = new Set(rows.filter((r) => r.lanes === lanes).map((r) => r.lane));
    return Array.from({ length: lanes }, (_, i) => present.has(i)).every(Boolean);
  });
  if (!complete) return null;
  const lowest = lowestArchiveId(rows, (row) => row.position);
  return lowest ? { position: lowest.position, updatedAt: lowest.updatedAt } : null;
}

/**
 * Deletes the source's rows of other lane counts. Only once every current lane has committed a
 * batch: until then the old rows are what bounds the lanes still without a row of their own.
 */
export async function dropOtherLanes(db: Db, source: string, lanes: number): Promise<void> {
  const stale = (await sourceRows(db, source))
    .filter((row) => {
      const lane = laneOfRow(source, row);
      return lane !== null && lane.lanes !== lanes;
    })
    .map((row) => row.source);
  for (const name of stale) await db.delete(checkpoints).where(eq(checkpoints.source, name));
}

/**
 * Up to when ingest has stored the source's archive: its checkpoint's archive id (a µs
 * timestamp) in epoch ms, or null before every lane has one. Read at most once per `maxAgeMs`,
 * so any number of callers polling it cost one query.
 */
export function ingestedUpTo(
  db: Db,
  source: string,
  maxAgeMs = 1000,
  clock: () => number = Date.now,
): () => Promise<number | null> {
  let cached: { at: number; value: Promise<number | null> } | null = null;
  return () => {
    const now = clock();
    if (!cached || now - cached.at >= maxAgeMs) {
      const value = readCheckpoint(db, source).then((c) =>
        c && /^\d+$/.test(c.position) ? Number(BigInt(c.position) / 1000n) : null,
      );
      const entry = { at: now, value };
      cached = entry;
      // A failed read is not kept: the next caller asks again.
      value.catch(() => {
        if (cached === entry) cached = null;
      });
    }
    return cached.value;
  };
}
