import { type Client, xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import type { Logger } from "../logger.js";
import type { IngestItem } from "./pipeline.js";

export const NS_MAM = "urn:xmpp:mam:2";
const NS_RSM = "http://jabber.org/protocol/rsm";
const NS_FORWARD = "urn:xmpp:forward:0";

/** ejabberd caps a MAM page at 250 results whatever the client asks for. */
export const MAM_PAGE = 250;

/**
 * Pages a catch-up reads ahead of the oldest commit still running: enough to fill the
 * pipeline's largest batch (DEFAULT_MAX_BATCH) while another commits, so a catch-up that
 * outruns the database commits in big batches.
 */
export const PAGES_IN_FLIGHT = 32;

/**
 * Bytes of pages (their copies' text) read ahead at most, whatever PAGES_IN_FLIGHT allows; the
 * page that crosses it is read, the next waits.
 * Copies of ordinary messages (about 1 KB) never reach it: 32 pages of them are ~10 MB. A
 * backlog of stanzas near ejabberd's 256 KB limit would otherwise hold 2 GB of text, and more
 * as parsed elements, before the first commit ends.
 */
export const READ_AHEAD_BYTES = 32 * 1024 * 1024;

export interface CatchUpOptions {
  xmpp: Client;
  logger: Logger;
  /** archive id to read after (exclusive), or null for the whole archive */
  after: string | null;
  /**
   * Commits a page. Commits must finish in the order they were asked for (the pipeline's do);
   * up to `pagesInFlight` run while the next pages are fetched.
   */
  commit: (items: IngestItem[]) => Promise<void>;
  /** pages read ahead of the oldest commit still running (default PAGES_IN_FLIGHT; 1 = in turn) */
  pagesInFlight?: number;
  /**
   * bytes those pages may hold (default READ_AHEAD_BYTES): past it, the next page waits for
   * commits to end, down to none (so at most this plus one page is held)
   */
  readAheadBytes?: number;
  pageTimeoutMs?: number;
  progressEveryMs?: number;
}

export interface CatchUpResult {
  pages: number;
  copies: number;
  last: string | null;
  ms: number;
  /** of `ms`, the time spent waiting for commits rather than for the archive */
  commitWaitMs: number;
}

/** `id - 1` for decimal archive ids beyond 2^53. */
export function predecessor(id: string): string {
  const n = BigInt(id);
  return (n > 0n ? n - 1n : 0n).toString();
}

/** The archive id `micros` before `id`: archive ids are µs timestamps in ejabberd. */
export function lookBack(id: string, micros: number): string {
  const n = BigInt(id) - BigInt(Math.max(0, Math.round(micros)));
  return (n > 0n ? n : 0n).toString();
}

let queryCounter = 0;

/**
 * Reads the observer's own archive from `after` to its end with XEP-0313, page by page, handing
 * each page to `commit` and asking for the next while up to `pagesInFlight` commit, so the
 * archive and the database work side by side; it returns once every page is committed. Pages
 * overlap by one id (`after` = last − 1): archive ids are µs timestamps from concurrent sessions
 * and can collide, and ejabberd accepts an `after` that is not itself an id. The overlap is
 * harmless because writes are idempotent.
 */
export async function catchUp(o: CatchUpOptions): Promise<CatchUpResult> {
  const started = performance.now();
  const result: CatchUpResult = { pages: 0, copies: 0, last: null, ms: 0, commitWaitMs: 0 };
  const inFlight: { commit: Promise<void>; bytes: number }[] = [];
  let bytesInFlight = 0;
  const limit = Math.max(1, o.pagesInFlight ?? PAGES_IN_FLIGHT);
  const maxBytes = o.readAheadBytes ?? READ_AHEAD_BYTES;
  /** Waits for the oldest commits until at most `keep` pages, and `maxBytes`, are in flight. */
  const settle = async (keep: number) => {
    const waitStarted = performance.now();
    try {
      for (;;) {
        const oldest = inFlight[0];
        if (!oldest || (inFlight.length <= keep && bytesInFlight <= maxBytes)) break;
        inFlight.shift();
        bytesInFlight -= oldest.bytes;
        await oldest.commit;
      }
    } finally {
      result.commitWaitMs += performance.now() - waitStarted;
    }
  };
  let after = o.after;
  let lastProgress = started;
  try {
    for (;;) {
      const page = await queryPage(o.xmpp, after, o.pageTimeoutMs ?? 60_000);
      result.pages++;
      result.copies += page.items.length;
      const commit = o.commit(page.items);
      // Awaited in turn by settle(); until then a failure must not count as unhandled.
      commit.catch(() => {});
      inFlight.push({ commit, bytes: page.bytes });
      bytesInFlight += page.bytes;
      await settle(limit - 1);
      if (page.last) result.last = page.last;
      const now = performance.now();
      if (now - lastProgress > (o.progressEveryMs ?? 5000)) {
        lastProgress = now;
        o.logger.info(
          { pages: result.pages, copies: result.copies, at: result.last },
          "catching up from the archive",
        );
      }
      if (page.complete || !page.last) break;
      const next = predecessor(page.last);
      // A page whose items all share one id cannot move forward by overlapping; step past it.
      after = after === next ? page.last : next;
    }
    await settle(0);
  } finally {
    // On a failed page, the commits already asked for still finish before the caller goes on.
    await Promise.allSettled(inFlight.map((page) => page.commit));
  }
  result.ms = Math.round(performance.now() - started);
  result.commitWaitMs = Math.round(result.commitWaitMs);
  return result;
}

interface Page {
  items: IngestItem[];
  complete: boolean;
  last: string | null;
  /** about what its copies weigh as text (see textLength) */
  bytes: number;
}

async function queryPage(xmpp: Client, after: string | null, timeoutMs: number): Promise<Page> {
  const queryid = `syncside-${Date.now().toString(36)}-${++queryCounter}`;
  const items: IngestItem[] = [];
  const onStanza = (stanza: Element) => {
    if (!stanza.is("message")) return;
    const res = stanza.getChild("result", NS_MAM);
    if (!res || res.attrs.queryid !== queryid) return;
    const copy = res.getChild("forwarded", NS_FORWARD)?.getChild("message");
    if (copy) items.push({ copy, archiveId: String(res.attrs.id ?? "") || null });
  };
  xmpp.on("stanza", onStanza);
  try {
    const set = xml("set", { xmlns: NS_RSM }, xml("max", {}, String(MAM_PAGE)));
    if (after) set.append(xml("after", {}, after));
    // Not iqCaller.set: it returns the answer's child named like the request (<query/>), and
    // MAM answers with <fin/>, so paging would stop after the first page.
    const answer = await xmpp.iqCaller.request(
      xml("iq", { type: "set" }, xml("query", { xmlns: NS_MAM, queryid }, set)),
      timeoutMs,
    );
    const fin = answer.getChild("fin", NS_MAM);
    const last = fin?.getChild("set", NS_RSM)?.getChildText("last") ?? null;
    let bytes = 0;
    for (const item of items) bytes += textLength(item.copy);
    return { items, complete: fin?.attrs.complete === "true", last, bytes };
  } finally {
    xmpp.removeListener("stanza", onStanza);
  }
}

/**
 * The characters of an element's names, attribute values and text: about its size on the wire,
 * for a walk over what parsing has already built. Iterative: the parser builds trees of any
 * depth, which a recursive walk could not take.
 */
export function textLength(element: Element): number {
  let n = 0;
  const stack: (Element | string)[] = [element];
  for (let node = stack.pop(); node !== undefined; node = stack.pop()) {
    if (typeof node === "string") {
      n += node.length;
      continue;
    }
    n += node.name.length;
    for (const key in node.attrs) n += key.length + String(node.attrs[key]).length;
    for (const child of node.children) stack.push(child as Element | string);
  }
  return n;
}
