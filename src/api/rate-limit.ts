import { isIPv6 } from "node:net";

/**
 * At most `limit` hits per key within the last `windowMs`, kept in this process's memory.
 * With several API replicas each one limits separately, so the effective limit is the
 * configured one times the number of replicas. Time is passed in by the caller (the app's
 * clock), so tests can move it.
 */
export class SlidingWindow {
  private readonly hits = new Map<string, number[]>();
  private lastSweep = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
  ) {}

  /** Milliseconds until the key may try again; 0 when it may try now. */
  retryAfterMs(key: string, now: number): number {
    const live = this.live(key, now);
    if (live.length < this.limit) return 0;
    return (live[live.length - this.limit] as number) + this.windowMs - now;
  }

  add(key: string, now: number): void {
    this.sweep(now);
    const live = this.live(key, now);
    live.push(now);
    // Only the newest `limit` hits decide when the key is free again.
    if (live.length > this.limit) live.splice(0, live.length - this.limit);
    this.hits.set(key, live);
  }

  /** Takes back one hit made at `at`, e.g. an attempt that turned out to succeed. */
  remove(key: string, at: number): void {
    const list = this.hits.get(key);
    const i = list?.lastIndexOf(at) ?? -1;
    if (!list || i < 0) return;
    list.splice(i, 1);
    if (list.length === 0) this.hits.delete(key);
  }

  /** Keys with hits still in the window (for tests and metrics). */
  get size(): number {
    return this.hits.size;
  }

  private live(key: string, now: number): number[] {
    const list = this.hits.get(key) ?? [];
    const from = list.findIndex((t) => t > now - this.windowMs);
    return from < 0 ? [] : from === 0 ? list : list.slice(from);
  }

  /** Keys that stop failing are never read again; drop them once per window so memory stays bounded. */
  private sweep(now: number): void {
    if (now - this.lastSweep < this.windowMs) return;
    this.lastSweep = now;
    for (const key of [...this.hits.keys()]) {
      const live = this.live(key, now);
      if (live.length === 0) this.hits.delete(key);
      else this.hits.set(key, live);
    }
  }
}

/**
 * The rate-limit key of a client address. An IPv6 host usually owns a whole /64, so it is
 * limited per /64; IPv4-mapped addresses count as their IPv4 address.
 */
export function addressBucket(address: string): string {
  const bare = address.replace(/%.*$/, "");
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(bare);
  if (mapped?.[1]) return mapped[1];
  if (!isIPv6(bare)) return bare;
  const [head = "", tail] = bare.split("::");
  const groups = (part: string) =>
    part ? part.split(":").flatMap((g) => (g.includes(".") ? ["0", "0"] : [g])) : [];
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const full = [...left, ...Array<string>(8 - left.length - right.length).fill("0"), ...right];
  return `${full
    .slice(0, 4)
    .map((g) => Number.parseInt(g, 16).toString(16))
    .join(":")}::/64`;
}
