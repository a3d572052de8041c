import { describe, expect, it } from "vitest";
import { addressBucket, SlidingWindow } from "../../src/api/rate-limit.js";

const MIN = 60_000;

describe("SlidingWindow", () => {
  it("allows `limit` hits, then says exactly when the oldest one leaves the window", () => {
    const w = new SlidingWindow(3, 15 * MIN);
    w.add("k", 0);
    w.add("k", 1 * MIN);
    expect(w.retryAfterMs("k", 2 * MIN)).toBe(0);
    w.add("k", 2 * MIN);
    expect(w.retryAfterMs("k", 2 * MIN)).toBe(13 * MIN);
    expect(w.retryAfterMs("k", 15 * MIN - 1)).toBe(1);
    expect(w.retryAfterMs("k", 15 * MIN)).toBe(0);
  });

  it("slides: after one hit expires exactly one more is allowed", () => {
    const w = new SlidingWindow(2, 10_000);
    w.add("k", 0);
    w.add("k", 5_000);
    w.add("k", 10_000);
    expect(w.retryAfterMs("k", 10_000)).toBe(5_000);
    expect(w.retryAfterMs("k", 15_000)).toBe(0);
  });

  it("keeps keys apart", () => {
    const w = new SlidingWindow(1, 10_000);
    w.add("a", 0);
    expect(w.retryAfterMs("a", 1)).toBe(9_999);
    expect(w.retryAfterMs("b", 1)).toBe(0);
  });

  it("takes back a hit that turned out not to count", () => {
    const w = new SlidingWindow(1, 10_000);
    w.add("k", 100);
    w.remove("k", 100);
    expect(w.retryAfterMs("k", 200)).toBe(0);
    expect(w.size).toBe(0);
    w.remove("never-seen", 5);
  });

  it("forgets idle keys once a window has passed, so memory stays bounded", () => {
    const w = new SlidingWindow(5, 10_000);
    for (let i = 0; i < 100; i++) w.add(`k${i}`, 0);
    expect(w.size).toBe(100);
    w.add("late", 10_000);
    expect(w.size).toBe(1);
  });
});

describe("addressBucket", () => {
  it("keeps IPv4 addresses and unmaps IPv4-mapped IPv6", () => {
    expect(addressBucket("203.0.113.7")).toBe("203.0.113.7");
    expect(addressBucket("::ffff:203.0.113.7")).toBe("203.0.113.7");
  });

  it("groups IPv6 addresses by /64", () => {
    expect(addressBucket("2001:db8:1:2:aaaa::1")).toBe("2001:db8:1:2::/64");
    expect(addressBucket("2001:0db8:0001:0002:ffff:ffff:ffff:ffff")).toBe("2001:db8:1:2::/64");
    expect(addressBucket("2001:db8::1")).toBe("2001:db8:0:0::/64");
    expect(addressBucket("::1")).toBe("0:0:0:0::/64");
    expect(addressBucket("fe80::1%eth0")).toBe("fe80:0:0:0::/64");
  });

  it("passes through what is not an address", () => {
    expect(addressBucket("unknown")).toBe("unknown");
  });
});
