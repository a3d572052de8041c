import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { decodePosition, encodePosition } from "../../src/api/position.js";

const key = randomBytes(32);
const epoch = "e1Hx0Zp7QmS9";

describe("sync positions", () => {
  it("round-trips seq and base as an opaque base64url string", () => {
    const text = encodePosition(epoch, key, { account: 42, seq: 1042, base: 1000 });
    expect(text).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(text).not.toContain("1042");
    expect(decodePosition(epoch, key, text)).toEqual({
      ok: true,
      position: { account: 42, seq: 1042, base: 1000 },
    });
  });

  it("keeps the largest safe seq intact", () => {
    const seq = Number.MAX_SAFE_INTEGER;
    const text = encodePosition(epoch, key, { account: seq, seq, base: seq });
    expect(decodePosition(epoch, key, text)).toEqual({
      ok: true,
      position: { account: seq, seq, base: seq },
    });
  });

  it.each([
    ["account", 0],
    ["seq", 8],
  ])("refuses a position whose %s was altered", (_field, offset) => {
    const text = encodePosition(epoch, key, { account: 3, seq: 7, base: 7 });
    const bytes = Buffer.from(text, "base64url");
    const at = 2 + epoch.length + offset;
    bytes.writeBigUInt64BE(bytes.readBigUInt64BE(at) + 1n, at);
    expect(decodePosition(epoch, key, bytes.toString("base64url"))).toEqual({
      ok: false,
      reason: "garbled",
    });
  });

  it("tells a position of the earlier format, without the account, apart from a garbled one", () => {
    // format 1: format | epoch length | epoch | seq | base | tag, as servers issued it before
    const payload = Buffer.alloc(2 + epoch.length + 16);
    payload.writeUInt8(1, 0);
    payload.writeUInt8(epoch.length, 1);
    payload.write(epoch, 2);
    payload.writeBigUInt64BE(7n, 2 + epoch.length);
    payload.writeBigUInt64BE(7n, 10 + epoch.length);
    const old = Buffer.concat([payload, Buffer.alloc(16)]).toString("base64url");
    expect(decodePosition(epoch, key, old)).toEqual({ ok: false, reason: "old_format" });
  });

  it("refuses a position signed with another key", () => {
    const text = encodePosition(epoch, randomBytes(32), { account: 3, seq: 7, base: 7 });
    expect(decodePosition(epoch, key, text)).toEqual({ ok: false, reason: "garbled" });
  });

  it("tells a position from another store epoch apart from a garbled one", () => {
    const text = encodePosition("another-epoch", randomBytes(32), { account: 3, seq: 7, base: 7 });
    expect(decodePosition(epoch, key, text)).toEqual({ ok: false, reason: "other_epoch" });
  });

  it.each([
    "",
    "not a position!",
    "AAAA",
    "x".repeat(500),
    encodePosition(epoch, key, { account: 3, seq: 3, base: 3 }).slice(0, -2),
    `${encodePosition(epoch, key, { account: 3, seq: 3, base: 3 })}AA`,
  ])("calls %j garbled", (text) => {
    expect(decodePosition(epoch, key, text)).toEqual({ ok: false, reason: "garbled" });
  });

  it("refuses a base beyond its seq, which no server ever issues", () => {
    const text = encodePosition(epoch, key, { account: 3, seq: 3, base: 9 });
    expect(decodePosition(epoch, key, text)).toEqual({ ok: false, reason: "garbled" });
  });
});
