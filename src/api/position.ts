import { createHmac, timingSafeEqual } from "node:crypto";

/**
 * A sync position as the client stores it. `seq` is where the next sync continues; `base` is the
 * `since` a paged sync started from, kept so that every page computes message deltas from the same
 * point (a conversation first seen on page 3 may hold messages older than page 2's boundary).
 */
export interface Position {
  seq: number;
  base: number;
}

export type DecodedPosition =
  | { ok: true; position: Position }
  | { ok: false; reason: "garbled" | "other_epoch" };

const FORMAT = 1;
const TAG_BYTES = 16;

function tag(key: Buffer, payload: Buffer): Buffer {
  return createHmac("sha256", key).update(payload).digest().subarray(0, TAG_BYTES);
}

/** format(1) | epoch length(1) | epoch | seq(8) | base(8) | HMAC-SHA256 tag(16), base64url */
export function encodePosition(epoch: string, key: Buffer, position: Position): string {
  const epochBytes = Buffer.from(epoch, "utf8");
  const payload = Buffer.alloc(2 + epochBytes.length + 16);
  payload.writeUInt8(FORMAT, 0);
  payload.writeUInt8(epochBytes.length, 1);
  epochBytes.copy(payload, 2);
  payload.writeBigUInt64BE(BigInt(position.seq), 2 + epochBytes.length);
  payload.writeBigUInt64BE(BigInt(position.base), 10 + epochBytes.length);
  return Buffer.concat([payload, tag(key, payload)]).toString("base64url");
}

const BASE64URL = /^[A-Za-z0-9_-]+$/;

/**
 * The epoch is read before the tag is checked: another store signs with another key, and its
 * positions must be told apart from tampered ones (410 rather than 400).
 */
export function decodePosition(epoch: string, key: Buffer, text: string): DecodedPosition {
  if (!BASE64URL.test(text) || text.length > 200) return { ok: false, reason: "garbled" };
  const bytes = Buffer.from(text, "base64url");
  if (bytes.length < 2 + 16 + TAG_BYTES || bytes.readUInt8(0) !== FORMAT) {
    return { ok: false, reason: "garbled" };
  }
  const epochLength = bytes.readUInt8(1);
  if (bytes.length !== 2 + epochLength + 16 + TAG_BYTES) return { ok: false, reason: "garbled" };
  const payload = bytes.subarray(0, bytes.length - TAG_BYTES);
  if (payload.subarray(2, 2 + epochLength).toString("utf8") !== epoch) {
    return { ok: false, reason: "other_epoch" };
  }
  if (!timingSafeEqual(tag(key, payload), bytes.subarray(payload.length))) {
    return { ok: false, reason: "garbled" };
  }
  const seq = payload.readBigUInt64BE(2 + epochLength);
  const base = payload.readBigUInt64BE(10 + epochLength);
  if (seq > BigInt(Number.MAX_SAFE_INTEGER) || base > seq) return { ok: false, reason: "garbled" };
  return { ok: true, position: { seq: Number(seq), base: Number(base) } };
}
