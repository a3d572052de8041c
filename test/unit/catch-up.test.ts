import { EventEmitter } from "node:events";
import { type Client, xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import { describe, expect, it } from "vitest";
import { catchUp, NS_MAM, textLength } from "../../src/ingest/catch-up.js";
import type { IngestItem } from "../../src/ingest/pipeline.js";
import { createLogger } from "../../src/logger.js";

/**
 * An archive of `pages` pages of two copies each, answering XEP-0313 queries the way ejabberd
 * does: results as messages carrying the query id, then the iq result with <fin/>.
 */
function archive(pages: number, body = "") {
  const stanzas = new EventEmitter();
  const asked: (string | null)[] = [];
  const client = {
    on: (event: string, listener: (stanza: Element) => void) => stanzas.on(event, listener),
    removeListener: (event: string, listener: (stanza: Element) => void) =>
      stanzas.removeListener(event, listener),
    iqCaller: {
      async request(iq: Element) {
        const query = iq.getChild("query", NS_MAM);
        const after = query?.getChild("set")?.getChildText("after") ?? null;
        asked.push(after);
        const page = asked.length;
        const ids = [page * 10 + 1, page * 10 + 2].map(String);
        for (const id of ids) {
          stanzas.emit(
            "stanza",
            xml(
              "message",
              {},
              xml(
                "result",
                { xmlns: NS_MAM, queryid: query?.attrs.queryid, id },
                xml(
                  "forwarded",
                  { xmlns: "urn:xmpp:forward:0" },
                  xml("message", { id }, ...(body ? [xml("body", {}, body)] : [])),
                ),
              ),
            ),
          );
        }
        const last = ids.at(-1) as string;
        return xml(
          "iq",
          { type: "result" },
          xml(
            "fin",
            { xmlns: NS_MAM, complete: page === pages ? "true" : "false" },
            xml("set", { xmlns: "http://jabber.org/protocol/rsm" }, xml("last", {}, last)),
          ),
        );
      },
    },
  };
  return { client: client as unknown as Client, asked };
}

/** Commits that finish only when the test says so, in the order they were asked for. */
function heldCommits() {
  const pending: { items: IngestItem[]; done: (err?: Error) => void }[] = [];
  const commit = (items: IngestItem[]) =>
    new Promise<void>((resolve, reject) => {
      pending.push({ items, done: (err) => (err ? reject(err) : resolve()) });
    });
  return { pending, commit };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 10));
const logger = createLogger("silent");

describe("catchUp", () => {
  it("reads ahead while pages commit, at most pagesInFlight, and ends once all are committed", async () => {
    const { client, asked } = archive(4);
    const { pending, commit } = heldCommits();
    let finished = false;
    const run = catchUp({ xmpp: client, logger, after: null, commit, pagesInFlight: 2 }).then(
      (result) => {
        finished = true;
        return result;
      },
    );
    await settle();
    // Two pages handed over, the second read while the first commits; no third yet.
    expect(asked).toEqual([null, "11"]);
    expect(pending.map((p) => p.items.map((i) => i.archiveId))).toEqual([
      ["11", "12"],
      ["21", "22"],
    ]);
    pending[0]?.done();
    await settle();
    expect(asked).toEqual([null, "11", "21"]);
    pending[1]?.done();
    await settle();
    expect(asked).toHaveLength(4);
    pending[2]?.done();
    await settle();
    // Every page read, the last commit still running: not done yet.
    expect(finished).toBe(false);
    pending[3]?.done();
    const result = await run;
    expect(result).toMatchObject({ pages: 4, copies: 8, last: "42" });
    expect(result.commitWaitMs).toBeGreaterThanOrEqual(0);
  });

  it("reads no further ahead than readAheadBytes allow, down to one page in turn", async () => {
    // Two copies of ~10 KB a page: three pages fit in 64 KB, a fourth would not.
    const { client, asked } = archive(6, "x".repeat(10_000));
    const { pending, commit } = heldCommits();
    const run = catchUp({
      xmpp: client,
      logger,
      after: null,
      commit,
      pagesInFlight: 32,
      readAheadBytes: 64_000,
    });
    await settle();
    expect(asked).toHaveLength(4);
    pending[0]?.done();
    await settle();
    expect(asked).toHaveLength(5);
    // A page heavier than the whole allowance waits for every commit before it.
    const tiny = archive(3, "x".repeat(10_000));
    const held = heldCommits();
    const inTurn = catchUp({
      xmpp: tiny.client,
      logger,
      after: null,
      commit: held.commit,
      readAheadBytes: 1_000,
    });
    await settle();
    expect(tiny.asked).toHaveLength(1);
    held.pending[0]?.done();
    await settle();
    expect(tiny.asked).toHaveLength(2);
    held.pending[1]?.done();
    await settle();
    held.pending[2]?.done();
    expect(await inTurn).toMatchObject({ pages: 3, copies: 6 });
    for (const p of pending.slice(1)) p.done();
    await settle();
    for (const p of pending.slice(5)) p.done();
    expect(await run).toMatchObject({ pages: 6, copies: 12 });
  });

  it("weighs a copy about as its text on the wire", () => {
    const copy = xml(
      "message",
      { to: "observer@example.org", id: "c1" },
      xml("forwarded", { xmlns: "urn:xmpp:forward:0" }, xml("body", {}, "über ".repeat(200))),
    );
    const wire = copy.toString().length;
    expect(textLength(copy)).toBeGreaterThan(wire * 0.8);
    expect(textLength(copy)).toBeLessThanOrEqual(wire);
  });

  it("weighs a copy nested deeper than any recursion could go", () => {
    let nested = xml("body", {}, "end");
    for (let i = 0; i < 100_000; i++) nested = xml("a", {}, nested);
    expect(textLength(nested)).toBe(100_000 + "body".length + "end".length);
  });

  it("fails when a commit fails, after the commits already asked for have finished", async () => {
    const { client } = archive(3);
    const { pending, commit } = heldCommits();
    const run = catchUp({ xmpp: client, logger, after: null, commit, pagesInFlight: 2 });
    const outcome = run.then(
      () => "resolved",
      (err: Error) => err.message,
    );
    await settle();
    pending[0]?.done(new Error("database refused"));
    await settle();
    pending[1]?.done();
    pending[2]?.done();
    expect(await outcome).toBe("database refused");
  });
});
