import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { decodePosition, encodePosition } from "../../src/api/position.js";

const key = randomBytes(32);
const epoch = "e1Hx0Zp7QmS9";

describe("sync positions", () => {
  it("round-trips seq and base as an opaque base64url string", () => {
    const text = encodePosition(epoch, key, { seq: 1042, base: 1000 });
    expect(text).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(text).not.toContain("1042");
    expect(decodePosition(epoch, key, text)).toEqual({
      ok: true,
      position: { seq: 1042, base: 1000 },
    });
  });

  it("keeps the largest safe seq intact", () => {
    const seq = Number.MAX_SAFE_INTEGER;
    const text = encodePosition(epoch, key, { seq, base: seq });
    expect(decodePosition(epoch, key, text)).toEqual({ ok: true, position: { seq, base: seq } });
  });

  it("refuses a position whose seq was altered", () => {
    const bytes = Buffer.from(encodePosition(epoch, key, { seq: 7, base: 7 }), "base64url");
    bytes.writeBigUInt64BE(8n, 2 + epoch.length);
    expect(decodePosition(epoch, key, bytes.toString("base64url"))).toEqual({
      ok: false,
      reason: "garbled",
    });
  });

  it("refuses a position signed with another key", () => {
    const text = encodePosition(epoch, randomBytes(32), { seq: 7, base: 7 });
    expect(decodePosition(epoch, key, text)).toEqual({ ok: false, reason: "garbled" });
  });

  it("tells a position from another store epoch apart from a garbled one", () => {
    const text = encodePosition("another-epoch", randomBytes(32), { seq: 7, base: 7 });
    expect(decodePosition(epoch, key, text)).toEqual({ ok: false, reason: "other_epoch" });
  });

  it.each([
    "",
    "not a position!",
    "AAAA",
    "x".repeat(500),
    encodePosition(epoch, key, { seq: 3, base: 3 }).slice(0, -2),
    `${encodePosition(epoch, key, { seq: 3, base: 3 })}AA`,
  ])("calls %j garbled", (text) => {
    expect(decodePosition(epoch, key, text)).toEqual({ ok: false, reason: "garbled" });
  });

  it("refuses a base beyond its seq, which no server ever issues", () => {
    const text = encodePosition(epoch, key, { seq: 3, base: 9 });
    expect(decodePosition(epoch, key, text)).toEqual({ ok: false, reason: "garbled" });
  });
});
