import { describe, expect, it } from "vitest";
import { IngestStats } from "../../src/ingest/stats.js";
import type { BatchResult } from "../../src/store/events.js";

const batch: BatchResult = {
  written: 2,
  duplicates: 0,
  foreign: 0,
  accountIds: [],
  byKind: {},
  newestWrittenAt: null,
  erased: [],
};

describe("ingest lag", () => {
  it("is the last batch's, and grows with the oldest copy still waiting for its commit", () => {
    let now = Date.parse("2026-11-26T12:00:00Z");
    const stats = new IngestStats(() => now);
    expect(stats.lagMs()).toBeNull();

    stats.recordBatch({ ...batch, newestWrittenAt: now - 40 }, 5);
    expect(stats.lagMs()).toBe(40);

    // Copies from 10 s ago are pushed and their writes keep failing: the lag says so.
    const older = stats.pendingFrom(now - 10_000);
    const newer = stats.pendingFrom(now - 1_000);
    now += 5_000;
    expect(stats.lagMs()).toBe(15_000);
    older();
    expect(stats.lagMs()).toBe(6_000);
    newer();
    expect(stats.lagMs()).toBe(40);
  });

  it("is not set by a batch that only read copies again: a restart's look-back is no lag", () => {
    let now = Date.parse("2026-11-26T12:00:00Z");
    const stats = new IngestStats(() => now);
    stats.recordBatch({ ...batch, written: 0, duplicates: 8 }, 5);
    expect(stats.lagMs()).toBeNull();
    stats.recordBatch({ ...batch, newestWrittenAt: now - 25 }, 5);
    now += 60_000;
    stats.recordBatch({ ...batch, written: 0, duplicates: 3 }, 5);
    expect(stats.lagMs()).toBe(25);
  });

  it("counts events per second over the last minute only", () => {
    let now = 0;
    const stats = new IngestStats(() => now);
    stats.recordBatch({ ...batch, written: 600 }, 1);
    expect(stats.eventsPerSecond()).toBe(10);
    now += 30_000;
    stats.recordBatch({ ...batch, written: 60 }, 1);
    expect(stats.eventsPerSecond()).toBe(11);
    now += 31_000;
    expect(stats.eventsPerSecond()).toBe(1);
  });
});
