import { createHmac, timingSafeEqual } from "node:crypto";

/**
 * A sync position as the client stores it. `seq` is where the next sync continues; `base` is the
 * `since` a paged sync started from, kept so that every page computes message deltas from the same
 * point (a conversation first seen on page 3 may hold messages older than page 2's boundary).
 * `account` is the account it was issued to: a seq means nothing in another account's log, nor in
 * the log of an account erased and created again under the same JID.
 */
export interface Position {
  account: number;
  seq: number;
  base: number;
}

export type DecodedPosition =
  | { ok: true; position: Position }
  | { ok: false; reason: "garbled" | "other_epoch" | "old_format" };

/** 1: without the account (no longer issued); 2: with it. */
const FORMAT = 2;
const OLD_FORMATS = new Set([1]);
const TAG_BYTES = 16;
const FIELDS_BYTES = 24;

function tag(key: Buffer, payload: Buffer): Buffer {
  return createHmac("sha256", key).update(payload).digest().subarray(0, TAG_BYTES);
}

/**
 * format(1) | epoch length(1) | epoch | account(8) | seq(8) | base(8) | HMAC-SHA256 tag(16),
 * base64url
 */
export function encodePosition(epoch: string, key: Buffer, position: Position): string {
  const epochBytes = Buffer.from(epoch, "utf8");
  const at = 2 + epochBytes.length;
  const payload = Buffer.alloc(at + FIELDS_BYTES);
  payload.writeUInt8(FORMAT, 0);
  payload.writeUInt8(epochBytes.length, 1);
  epochBytes.copy(payload, 2);
  payload.writeBigUInt64BE(BigInt(position.account), at);
  payload.writeBigUInt64BE(BigInt(position.seq), at + 8);
  payload.writeBigUInt64BE(BigInt(position.base), at + 16);
  return Buffer.concat([payload, tag(key, payload)]).toString("base64url");
}

const BASE64URL = /^[A-Za-z0-9_-]+$/;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * The epoch is read before the tag is checked: another store signs with another key, and its
 * positions must be told apart from tampered ones (410 rather than 400). A position of an older
 * format this server issued before is `old_format`: the client starts over, as after a 410.
 */
export function decodePosition(epoch: string, key: Buffer, text: string): DecodedPosition {
  if (!BASE64URL.test(text) || text.length > 200) return { ok: false, reason: "garbled" };
  const bytes = Buffer.from(text, "base64url");
  if (bytes.length < 2 + TAG_BYTES) return { ok: false, reason: "garbled" };
  const format = bytes.readUInt8(0);
  if (OLD_FORMATS.has(format)) return { ok: false, reason: "old_format" };
  if (format !== FORMAT) return { ok: false, reason: "garbled" };
  const epochLength = bytes.readUInt8(1);
  if (bytes.length !== 2 + epochLength + FIELDS_BYTES + TAG_BYTES) {
    return { ok: false, reason: "garbled" };
  }
  const payload = bytes.subarray(0, bytes.length - TAG_BYTES);
  if (payload.subarray(2, 2 + epochLength).toString("utf8") !== epoch) {
    return { ok: false, reason: "other_epoch" };
  }
  if (!timingSafeEqual(tag(key, payload), bytes.subarray(payload.length))) {
    return { ok: false, reason: "garbled" };
  }
  const at = 2 + epochLength;
  const account = payload.readBigUInt64BE(at);
  const seq = payload.readBigUInt64BE(at + 8);
  const base = payload.readBigUInt64BE(at + 16);
  if (account > MAX_SAFE || seq > MAX_SAFE || base > seq) return { ok: false, reason: "garbled" };
  return { ok: true, position: { account: Number(account), seq: Number(seq), base: Number(base) } };
}
