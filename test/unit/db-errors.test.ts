import { DrizzleQueryError } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { isRefusedContent } from "../../src/store/db.js";

const coded = (code: string) => Object.assign(new Error(`failed with ${code}`), { code });

describe("isRefusedContent", () => {
  it.each([
    ["21000", "one upsert touching a row twice"],
    ["22021", "an invalid byte sequence"],
    ["22008", "a date out of range"],
    ["23505", "a unique violation"],
    ["23514", "a check violation"],
    ["54000", "an index row too large"],
  ])("refuses %s (%s) for the content", (code) => {
    expect(isRefusedContent(coded(code))).toBe(true);
  });

  it.each([
    ["40001", "a serialization failure"],
    ["40P01", "a deadlock"],
    ["57014", "a statement timeout or cancellation"],
    ["57P01", "an administrator's shutdown"],
    ["53300", "too many connections"],
    ["53100", "a full disk"],
    ["55P03", "a lock not available"],
    ["08006", "a connection failure"],
    ["42P01", "a missing table"],
    ["CONNECTION_CLOSED", "the driver's lost connection"],
    ["ERR_STREAM_WRITE_AFTER_END", "a write to a socket the server closed"],
    ["ERR_STREAM_DESTROYED", "a write to a destroyed socket"],
    ["ECONNREFUSED", "a refused socket"],
  ])("does not blame the content for %s (%s)", (code) => {
    expect(isRefusedContent(coded(code))).toBe(false);
  });

  it("reads the driver's code through drizzle's wrapper", () => {
    const wrapped = new DrizzleQueryError("insert …", [], coded("40P01"));
    expect(isRefusedContent(wrapped)).toBe(false);
    expect(isRefusedContent(new DrizzleQueryError("insert …", [], coded("22P05")))).toBe(true);
  });

  it("blames the content for an error thrown while building the statement", () => {
    expect(isRefusedContent(new TypeError("cannot read properties of undefined"))).toBe(true);
    expect(isRefusedContent(coded("ERR_OUT_OF_RANGE"))).toBe(true);
  });
});
