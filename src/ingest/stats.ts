import type { BatchResult } from "../store/events.js";

export type IngestRole = "disabled" | "starting" | "standby" | "leader";

/** What ingest reports about itself: read by /readyz, the admin view and metrics. */
export class IngestStats {
  role: IngestRole = "starting";
  connected = false;
  catchingUp = false;
  eventsWritten = 0;
  duplicates = 0;
  writeFailures = 0;
  lastBatchAt: Date | null = null;
  /** ms from the server receiving the newest copy the last batch wrote to its commit */
  lastLagMs: number | null = null;
  /** copies handed to the pipeline and not yet committed: per push, its oldest server time */
  private readonly pending = new Map<number, number>();
  private nextPending = 0;
  readonly rejects = new Map<string, number>();
  readonly ignored = new Map<string, number>();
  readonly eventsByKind = new Map<string, number>();
  /** commit times of recent events, for a per-minute rate */
  private readonly recent: { at: number; n: number }[] = [];

  constructor(private readonly clock: () => number = Date.now) {}

  reject(reason: string): void {
    this.rejects.set(reason, (this.rejects.get(reason) ?? 0) + 1);
  }

  ignore(reason: string): void {
    this.ignored.set(reason, (this.ignored.get(reason) ?? 0) + 1);
  }

  recordBatch(result: BatchResult, _writeMs: number): void {
    const now = this.clock();
    this.eventsWritten += result.written;
    this.duplicates += result.duplicates;
    for (const [kind, n] of Object.entries(result.byKind)) {
      this.eventsByKind.set(kind, (this.eventsByKind.get(kind) ?? 0) + (n ?? 0));
    }
    this.lastBatchAt = new Date(now);
    // A batch of copies read again only (a look-back after a restart) leaves the lag as it was.
    if (result.newestWrittenAt !== null) {
      this.lastLagMs = Math.max(0, now - result.newestWrittenAt);
    }
    if (result.written > 0) this.recent.push({ at: now, n: result.written });
    this.prune(now);
  }

  /**
   * Notes copies handed to the pipeline, by the server time of the oldest of them; the returned
   * function says they are committed (or dropped). See lagMs.
   */
  pendingFrom(oldestSentAtMs: number): () => void {
    const id = this.nextPending++;
    this.pending.set(id, oldestSentAtMs);
    return () => this.pending.delete(id);
  }

  /**
   * How far the store is behind the server: the last batch's lag, or, while copies wait to be
   * committed, the age of the oldest of them if that is more. So it grows while writes fail or
   * hang, and during a catch-up shows how old the copies being read are. Null before any batch
   * with nothing pending.
   */
  lagMs(): number | null {
    let oldest = Number.POSITIVE_INFINITY;
    for (const at of this.pending.values()) oldest = Math.min(oldest, at);
    if (oldest === Number.POSITIVE_INFINITY) return this.lastLagMs;
    return Math.max(this.lastLagMs ?? 0, this.clock() - oldest);
  }

  /** events committed per second over the last minute */
  eventsPerSecond(): number {
    const now = this.clock();
    this.prune(now);
    const total = this.recent.reduce((sum, r) => sum + r.n, 0);
    return Math.round((total / 60) * 10) / 10;
  }

  private prune(now: number): void {
    while (this.recent.length > 0 && (this.recent[0]?.at ?? now) < now - 60_000)
      this.recent.shift();
  }

  /** The readiness word for /readyz. */
  readiness(): string {
    if (this.role === "leader") return this.connected ? "connected" : "connecting";
    return this.role;
  }
}
