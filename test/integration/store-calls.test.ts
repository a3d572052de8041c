import { and, eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { activeCalls, effectiveCall, loadCalls, loadCallsQuery } from "../../src/store/calls.js";
import { queryRows } from "../../src/store/db.js";
import { appendBatch, type WriteOptions } from "../../src/store/events.js";
import { accounts } from "../../src/store/schema/accounts.js";
import { calls } from "../../src/store/schema/calls.js";
import { callSignal, msg, nextTime } from "../helpers/copies.js";
import { openTestStore, type TestStore } from "../helpers/database.js";

const RING = 60_000;
/** Every order of the items. */
function permutations(items: number[]): number[][] {
  if (items.length <= 1) return [items];
  return items.flatMap((item, i) =>
    permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]),
  );
}

const options: WriteOptions = {
  isLocal: (jid) => jid.endsWith("@example.org"),
  callRingTimeoutMs: RING,
  callMaxDurationMs: 4 * 3_600_000,
};

describe.each(["pglite", "postgres"] as const)("call state on %s", (driver) => {
  let t: TestStore;
  let n = 0;
  beforeAll(async () => {
    t = await openTestStore(driver);
  });
  afterAll(() => t?.close());

  const pair = () => {
    n++;
    return [`caller${n}@example.org`, `callee${n}@example.org`] as const;
  };
  const write = (...copies: Parameters<typeof appendBatch>[1]["copies"]) =>
    appendBatch(t.store.db, { copies }, options);
  async function idOf(jid: string) {
    const [row] = await t.store.db.select().from(accounts).where(eq(accounts.jid, jid));
    if (!row) throw new Error(`no account ${jid}`);
    return row.id;
  }
  async function callOf(jid: string, callId: string) {
    const [row] = await t.store.db
      .select()
      .from(calls)
      .where(and(eq(calls.accountId, await idOf(jid)), eq(calls.callId, callId)));
    return row;
  }
  const active = async (jid: string, now: Date) =>
    (await activeCalls(t.store.db, await idOf(jid), now)).map((c) => [
      c.callId,
      c.direction,
      c.state,
    ]);

  it("rings the callee until a device answers, then is accepted on both sides until finish", async () => {
    const [caller, callee] = pair();
    const propose = callSignal(caller, callee, {
      action: "propose",
      callId: "c1",
      media: ["audio", "video"],
    });
    await write(propose);
    // Twenty messages after the offer do not bury it.
    await write(
      ...Array.from({ length: 20 }, (_, i) => msg(caller, callee, `after-${i}`, "are you there?")),
    );
    const now = new Date(propose.sentAt.getTime() + 5000);
    expect(await active(callee, now)).toEqual([["c1", "in", "proposed"]]);
    expect(await active(caller, now)).toEqual([]);
    expect(await callOf(callee, "c1")).toMatchObject({
      media: ["audio", "video"],
      proposedAt: propose.sentAt,
      expiresAt: new Date(propose.sentAt.getTime() + RING),
    });

    await write(
      callSignal(callee, caller, { action: "ringing", callId: "c1" }, { resource: "tablet" }),
    );
    expect(await active(callee, now)).toEqual([["c1", "in", "ringing"]]);

    const proceed = callSignal(
      callee,
      caller,
      { action: "proceed", callId: "c1" },
      { resource: "tablet" },
    );
    await write(proceed);
    for (const jid of [caller, callee]) {
      expect(await callOf(jid, "c1")).toMatchObject({
        state: "accepted",
        answeredBy: "tablet",
        answeredAt: proceed.sentAt,
      });
    }
    expect(await active(caller, now)).toEqual([["c1", "out", "accepted"]]);

    const finish = callSignal(caller, callee, {
      action: "finish",
      callId: "c1",
      reason: "success",
    });
    await write(finish);
    expect(await callOf(callee, "c1")).toMatchObject({
      state: "finished",
      endReason: "finished",
      endedAt: finish.sentAt,
    });
    expect(await active(callee, finish.sentAt)).toEqual([]);
  });

  it("ends as retracted (a missed call) or rejected before an answer", async () => {
    const [caller, callee] = pair();
    await write(callSignal(caller, callee, { action: "propose", callId: "r1", media: ["audio"] }));
    const retract = callSignal(caller, callee, {
      action: "retract",
      callId: "r1",
      reason: "cancel",
    });
    await write(retract);
    expect(await callOf(callee, "r1")).toMatchObject({
      state: "retracted",
      endReason: "retracted",
      endedAt: retract.sentAt,
    });

    await write(callSignal(caller, callee, { action: "propose", callId: "r2", media: ["audio"] }));
    await write(callSignal(callee, caller, { action: "reject", callId: "r2", reason: "busy" }));
    expect(await callOf(caller, "r2")).toMatchObject({
      state: "rejected",
      endReason: "rejected",
      direction: "out",
    });
    expect(await active(callee, nextTime())).toEqual([]);
  });

  it("is missed once the ring timeout passes without an answer, judged at read time", async () => {
    const [caller, callee] = pair();
    const propose = callSignal(caller, callee, {
      action: "propose",
      callId: "t1",
      media: ["audio"],
    });
    await write(propose);
    const later = new Date(propose.sentAt.getTime() + RING + 1);
    expect(await active(callee, later)).toEqual([]);
    const row = await callOf(callee, "t1");
    expect(row && effectiveCall(row, later)).toMatchObject({
      state: "missed",
      endReason: "missed",
      endedAt: row?.expiresAt,
    });
  });

  it("never revives a call when its retract is stored before its propose", async () => {
    const [caller, callee] = pair();
    const at = nextTime();
    await write(
      callSignal(
        caller,
        callee,
        { action: "retract", callId: "o1" },
        { sentAt: new Date(at.getTime() + 1000) },
      ),
    );
    await write(
      callSignal(
        caller,
        callee,
        { action: "propose", callId: "o1", media: ["video"] },
        { sentAt: at },
      ),
    );
    expect(await callOf(callee, "o1")).toMatchObject({
      state: "retracted",
      direction: "in",
      media: ["video"],
      proposedAt: at,
    });
    expect(await active(callee, at)).toEqual([]);
  });

  it("goes on when another device of the callee rejects after one answered, in any write order", async () => {
    for (const order of ["as sent", "reject first"] as const) {
      const [caller, callee] = pair();
      const propose = callSignal(caller, callee, { action: "propose", callId: "r1", media: [] });
      const proceed = callSignal(
        callee,
        caller,
        { action: "proceed", callId: "r1" },
        { resource: "phone" },
      );
      const reject = callSignal(
        callee,
        caller,
        { action: "reject", callId: "r1" },
        { resource: "tablet" },
      );
      await write(propose);
      for (const copy of order === "as sent" ? [proceed, reject] : [reject, proceed]) {
        await write(copy);
      }
      for (const jid of [caller, callee]) {
        expect(await callOf(jid, "r1"), `${order}, ${jid}`).toMatchObject({
          state: "accepted",
          answeredBy: "phone",
          endedAt: null,
          endReason: null,
        });
      }
      // Applied twice, nothing changes.
      await write(reject, proceed);
      expect(await callOf(callee, "r1")).toMatchObject({ state: "accepted", answeredBy: "phone" });
    }
  });

  it("ends when a reject was sent before the answer, whichever is written first", async () => {
    for (const order of ["as sent", "answer first"] as const) {
      const [caller, callee] = pair();
      const propose = callSignal(caller, callee, { action: "propose", callId: "r2", media: [] });
      const reject = callSignal(callee, caller, { action: "reject", callId: "r2" });
      const proceed = callSignal(callee, caller, { action: "proceed", callId: "r2" });
      await write(propose);
      await write(...(order === "as sent" ? [reject, proceed] : [proceed, reject]));
      const row = await callOf(callee, "r2");
      expect(row, order).toMatchObject({ state: "rejected", endReason: "rejected" });
      // The answer is kept for a finish that may follow, but a phone sees no answer.
      expect(row?.answeredAt, order).toEqual(proceed.sentAt);
      expect(row && effectiveCall(row, nextTime()), order).toMatchObject({
        state: "rejected",
        answeredAt: null,
        answeredBy: null,
      });
    }
  });

  it("of an answer and the caller's retract, counts the one sent first, whichever is written first", async () => {
    for (const sent of ["answer first", "retract first"] as const) {
      for (const written of ["as sent", "reversed"] as const) {
        const [caller, callee] = pair();
        await write(callSignal(caller, callee, { action: "propose", callId: "t2", media: [] }));
        const answer = () =>
          callSignal(callee, caller, { action: "proceed", callId: "t2" }, { resource: "phone" });
        const retract = () => callSignal(caller, callee, { action: "retract", callId: "t2" });
        const signals = sent === "answer first" ? [answer(), retract()] : [retract(), answer()];
        for (const copy of written === "as sent" ? signals : [...signals].reverse()) {
          await write(copy);
        }
        const row = await callOf(callee, "t2");
        const label = `${sent}, written ${written}`;
        if (sent === "answer first") {
          expect(row, label).toMatchObject({ state: "accepted", answeredBy: "phone" });
        } else {
          expect(row, label).toMatchObject({ state: "retracted", endReason: "retracted" });
          expect(row && effectiveCall(row, nextTime()), label).toMatchObject({
            answeredBy: null,
          });
        }
      }
    }
  });

  it("ends every set of answers, rejects, retracts and finishes the same in every write order", async () => {
    type Spec = [
      from: "caller" | "callee",
      action: "propose" | "proceed" | "reject" | "retract" | "finish",
      resource?: string,
    ];
    const sets: { name: string; signals: Spec[]; view: Record<string, unknown> }[] = [
      {
        name: "an answer, another device's later reject, the finish",
        signals: [
          ["caller", "propose"],
          ["callee", "proceed", "phone"],
          ["callee", "reject", "tablet"],
          ["caller", "finish"],
        ],
        view: { state: "finished", endReason: "finished", answeredBy: "phone", answeredAt: 1 },
      },
      {
        name: "a reject, another device's later answer, the finish",
        signals: [
          ["caller", "propose"],
          ["callee", "reject", "tablet"],
          ["callee", "proceed", "phone"],
          ["caller", "finish"],
        ],
        view: { state: "finished", endReason: "finished", answeredBy: "phone", answeredAt: 2 },
      },
      {
        name: "a reject, a later answer, the caller's retract",
        signals: [
          ["caller", "propose"],
          ["callee", "reject", "tablet"],
          ["callee", "proceed", "phone"],
          ["caller", "retract"],
        ],
        view: { state: "rejected", endReason: "rejected", answeredBy: null, endedAt: 1 },
      },
      {
        name: "the caller's retract, a later answer, a reject",
        signals: [
          ["caller", "propose"],
          ["caller", "retract"],
          ["callee", "proceed", "phone"],
          ["callee", "reject", "tablet"],
        ],
        view: { state: "retracted", endReason: "retracted", answeredBy: null, endedAt: 1 },
      },
      {
        name: "an answer, another device's reject, a third device's answer",
        signals: [
          ["caller", "propose"],
          ["callee", "proceed", "phone"],
          ["callee", "reject", "laptop"],
          ["callee", "proceed", "tablet"],
        ],
        view: { state: "accepted", answeredBy: "phone", answeredAt: 1, endedAt: null },
      },
      {
        name: "two devices' answers and the finish",
        signals: [
          ["caller", "propose"],
          ["callee", "proceed", "phone"],
          ["callee", "proceed", "tablet"],
          ["caller", "finish"],
        ],
        view: { state: "finished", answeredBy: "phone", answeredAt: 1, endedAt: 3 },
      },
      {
        name: "a reject, two later answers and the finish",
        signals: [
          ["caller", "propose"],
          ["callee", "reject", "tablet"],
          ["callee", "proceed", "phone"],
          ["callee", "proceed", "laptop"],
          ["caller", "finish"],
        ],
        view: { state: "finished", answeredBy: "phone", answeredAt: 2, endedAt: 4 },
      },
    ];
    const base = nextTime().getTime();
    const at = (i: number) => new Date(base + i * 1000);
    for (const set of sets) {
      for (const order of permutations(set.signals.map((_, i) => i))) {
        const [caller, callee] = pair();
        for (const i of order) {
          const [from, action, resource] = set.signals[i] as Spec;
          const [sender, recipient] = from === "caller" ? [caller, callee] : [callee, caller];
          await write(
            callSignal(
              sender,
              recipient,
              { action, callId: "w1", media: [] },
              { resource, sentAt: at(i) },
            ),
          );
        }
        const row = await callOf(callee, "w1");
        const call = row && effectiveCall(row, at(10));
        const expected = Object.fromEntries(
          Object.entries(set.view).map(([k, v]) => [
            k,
            k.endsWith("At") && typeof v === "number" ? at(v) : v,
          ]),
        );
        expect(call, `${set.name}, written ${order}`).toMatchObject(expected);
      }
    }
  });

  it("moves a call only by signals of its own peer", async () => {
    const [caller, callee] = pair();
    const mallory = `mallory${n}@remote.example`;
    await write(callSignal(caller, callee, { action: "propose", callId: "p1", media: ["audio"] }));
    // Someone else names the same session id: retract, then a proceed of the callee to them.
    await write(
      callSignal(mallory, callee, { action: "retract", callId: "p1" }),
      callSignal(callee, mallory, { action: "proceed", callId: "p1" }),
    );
    expect(await callOf(callee, "p1")).toMatchObject({ peerJid: caller, state: "proposed" });
    expect(await active(callee, nextTime())).toEqual([["p1", "in", "proposed"]]);
  });

  it("rings only the lower session id when both sides propose at once (tie-break)", async () => {
    const [alice, bob] = pair();
    await write(
      callSignal(alice, bob, { action: "propose", callId: "b-session", media: ["audio"] }),
      callSignal(bob, alice, { action: "propose", callId: "a-session", media: ["audio"] }),
    );
    const now = nextTime();
    expect(await active(alice, now)).toEqual([["a-session", "in", "proposed"]]);
    expect(await active(bob, now)).toEqual([]);
  });

  it("keeps a migrated call answered: the new session does not ring again", async () => {
    const [caller, callee] = pair();
    await write(
      callSignal(caller, callee, { action: "propose", callId: "m1", media: ["audio"] }),
      callSignal(callee, caller, { action: "proceed", callId: "m1" }, { resource: "phone" }),
    );
    await write(
      callSignal(caller, callee, { action: "finish", callId: "m1", migratedTo: "m2" }),
      callSignal(caller, callee, { action: "propose", callId: "m2", media: ["audio"] }),
    );
    expect(await callOf(callee, "m1")).toMatchObject({
      state: "finished",
      endReason: "migrated",
      migratedTo: "m2",
    });
    expect(await callOf(callee, "m2")).toMatchObject({ state: "accepted", answeredBy: "phone" });
    expect(await active(callee, nextTime())).toEqual([["m2", "in", "accepted"]]);
  });

  it("keeps a migrated call answered in every write order and batching of both sessions' signals", async () => {
    const base = nextTime().getTime();
    const at = (i: number) => new Date(base + i * 1000);
    const variants = [
      { name: "no more", last: null, state: "accepted" },
      { name: "m2 finished", last: "finish", state: "finished" },
      { name: "m2 rejected later by another device", last: "reject", state: "accepted" },
    ] as const;
    for (const variant of variants) {
      for (const batching of ["one per batch", "one batch"] as const) {
        const count = variant.last ? 5 : 4;
        for (const order of permutations([...Array(count).keys()])) {
          const [caller, callee] = pair();
          const mallory = `mallory${n}@example.org`;
          const signals = [
            callSignal(
              caller,
              callee,
              { action: "propose", callId: "m1", media: ["audio"] },
              { sentAt: at(0) },
            ),
            callSignal(
              callee,
              caller,
              { action: "proceed", callId: "m1" },
              { resource: "phone", sentAt: at(1) },
            ),
            callSignal(
              caller,
              callee,
              { action: "finish", callId: "m1", migratedTo: "m2" },
              { sentAt: at(2) },
            ),
            callSignal(
              caller,
              callee,
              { action: "propose", callId: "m2", media: ["audio"] },
              { sentAt: at(3) },
            ),
            variant.last === "reject"
              ? callSignal(
                  callee,
                  caller,
                  { action: "reject", callId: "m2" },
                  { resource: "tablet", sentAt: at(4) },
                )
              : callSignal(caller, callee, { action: "finish", callId: "m2" }, { sentAt: at(4) }),
          ];
          // Someone else's session claiming to migrate to m2 changes nothing.
          const forged = callSignal(
            mallory,
            callee,
            { action: "finish", callId: "x1", migratedTo: "m2" },
            { sentAt: at(2) },
          );
          const copies = [...order.map((i) => signals[i] as (typeof signals)[number]), forged];
          if (batching === "one batch") await write(...copies);
          else for (const copy of copies) await write(copy);
          const label = `${variant.name}, ${batching}, written ${order}`;
          const m2 = await callOf(callee, "m2");
          expect(m2, label).toMatchObject({
            state: variant.state,
            answeredBy: "phone",
            answeredAt: at(1),
          });
          const ringing = variant.state === "accepted" ? [["m2", "in", "accepted"]] : [];
          expect(await active(callee, at(10)), label).toEqual(ringing);
          // Changed by the old session's signal written last, it carries that signal's seq, so
          // a delta sync since before it shows the change.
          if (batching === "one per batch" && (order.at(-1) === 1 || order.at(-1) === 2)) {
            const m1 = await callOf(callee, "m1");
            expect(m2?.seq, label).toBeGreaterThanOrEqual(m1?.seq ?? Number.POSITIVE_INFINITY);
          }
        }
      }
    }
  });

  it("ends an accepted call without finish after the maximum duration", async () => {
    const [caller, callee] = pair();
    await write(
      callSignal(caller, callee, { action: "propose", callId: "long", media: ["audio"] }),
      callSignal(callee, caller, { action: "accept", callId: "long" }, { resource: "desk" }),
    );
    const row = await callOf(callee, "long");
    const after = new Date((row?.answeredAt?.getTime() ?? 0) + 4 * 3_600_000 + 1);
    expect(row && effectiveCall(row, after)).toMatchObject({
      state: "finished",
      endReason: "expired",
    });
    expect(await active(callee, after)).toEqual([]);
  });
});

describe("the lookup of a batch's calls, on postgres", () => {
  let t: TestStore;
  beforeAll(async () => {
    t = await openTestStore("postgres");
  });
  afterAll(() => t?.close());

  it("finds calls by key and by migration through indexes, never reading the whole table", async () => {
    // 300 accounts with ten calls each, every tenth migrated to a new session.
    const copies = [];
    for (let a = 0; a < 300; a++) {
      const [caller, callee] = [`plan-caller${a}@example.org`, `plan-callee${a}@example.org`];
      for (let c = 0; c < 10; c++) {
        copies.push(callSignal(caller, callee, { action: "propose", callId: `c${c}`, media: [] }));
      }
      copies.push(
        callSignal(callee, caller, { action: "proceed", callId: "c0" }),
        callSignal(caller, callee, { action: "finish", callId: "c0", migratedTo: "c9" }),
      );
    }
    await appendBatch(t.store.db, { copies }, options);
    await t.store.db.execute(sql`analyze calls`);
    const [callee] = await t.store.db
      .select()
      .from(accounts)
      .where(eq(accounts.jid, "plan-callee7@example.org"));
    if (!callee) throw new Error("no account");
    const keys = [
      { accountId: callee.id, callId: "c0" },
      { accountId: callee.id, callId: "c9" },
    ];
    const found = await t.store.db.transaction((tx) => loadCalls(tx, keys));
    expect(found.map((c) => c.callId).sort()).toEqual(["c0", "c9"]);
    const rows = await queryRows<{ "QUERY PLAN": string }>(
      t.store.db,
      sql`explain (analyze, costs off) ${loadCallsQuery(t.store.db, keys)}`,
    );
    const plan = rows.map((r) => r["QUERY PLAN"]).join("\n");
    expect(plan).not.toContain("Seq Scan on calls");
    expect(plan).not.toContain("Hash");
    expect(plan).toContain("calls_account_migrated_to");
  });
});
