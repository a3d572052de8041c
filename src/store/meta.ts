import { randomBytes } from "node:crypto";
import { eq } from "drizzle-orm";
import type { Store } from "./db.js";
import { storeMeta } from "./schema/store-meta.js";

export interface StoreMeta {
  /** Identifies this store: positions minted by another database are refused. */
  epoch: string;
  /** HMAC key that signs positions, so a client cannot forge one. */
  positionKey: Buffer;
}

const cache = new WeakMap<Store, Promise<StoreMeta>>();

/**
 * The single store_meta row, created on first use. Insert-if-absent then read back, so replicas
 * starting at once all end up with the one row that won.
 */
export function loadStoreMeta(store: Store): Promise<StoreMeta> {
  let meta = cache.get(store);
  if (!meta) {
    meta = readOrCreate(store);
    // A failed load (database down) must not be remembered: the next request tries again.
    meta.catch(() => cache.delete(store));
    cache.set(store, meta);
  }
  return meta;
}

async function readOrCreate(store: Store): Promise<StoreMeta> {
  await store.db
    .insert(storeMeta)
    .values({
      id: 1,
      epoch: randomBytes(9).toString("base64url"),
      positionKey: randomBytes(32).toString("base64url"),
    })
    .onConflictDoNothing();
  const [row] = await store.db.select().from(storeMeta).where(eq(storeMeta.id, 1));
  if (!row) throw new Error("store_meta row missing right after it was created");
  return { epoch: row.epoch, positionKey: Buffer.from(row.positionKey, "base64url") };
}
