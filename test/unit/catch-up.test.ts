import { EventEmitter } from "node:events";
import type { Client } from "@xmpp/client";
import xml, { type Element } from "@xmpp/xml";
import { describe, expect, it } from "vitest";
import { catchUp, MAM_PAGE } from "../../src/ingest/catch-up.js";
import { createLogger } from "../../src/logger.js";

const NS_MAM = "urn:xmpp:mam:2";
const NS_RSM = "http://jabber.org/protocol/rsm";

/**
 * Answers MAM queries the way ejabberd 23.01 does: up to 250 <result/> messages, then an IQ
 * result carrying <fin/> (not <query/>) with the page's last id and complete="true" at the end.
 */
function fakeArchive(ids: string[]): { xmpp: Client; queries: (string | null)[] } {
  const emitter = new EventEmitter();
  const queries: (string | null)[] = [];
  const request = async (iq: Element) => {
    const query = iq.getChild("query", NS_MAM) as Element;
    const set = query.getChild("set", NS_RSM);
    const after = set?.getChildText("after") ?? null;
    const max = Math.min(Number(set?.getChildText("max") ?? 50), MAM_PAGE);
    queries.push(after);
    const rest = after === null ? ids : ids.filter((id) => BigInt(id) > BigInt(after));
    const page = rest.slice(0, max);
    for (const id of page) {
      const copy = xml("message", { id: `copy-${id}` });
      emitter.emit(
        "stanza",
        xml(
          "message",
          {},
          xml(
            "result",
            { xmlns: NS_MAM, queryid: query.attrs.queryid, id },
            xml("forwarded", { xmlns: "urn:xmpp:forward:0" }, copy),
          ),
        ),
      );
    }
    const rsm = xml("set", { xmlns: NS_RSM });
    if (page.length > 0) rsm.append(xml("last", {}, page[page.length - 1] as string));
    const fin = xml("fin", { xmlns: NS_MAM, complete: String(page.length === rest.length) }, rsm);
    return xml("iq", { type: "result" }, fin);
  };
  // set() as xmpp.js 0.14 has it: the answer's child with the request child's name.
  const set = async (child: Element) =>
    (await request(xml("iq", { type: "set" }, child))).getChild(child.name, child.attrs.xmlns);
  const xmpp = Object.assign(emitter, { iqCaller: { request, set } }) as unknown as Client;
  return { xmpp, queries };
}

describe("catchUp", () => {
  it("pages through an archive longer than one MAM page, each page overlapping the last", async () => {
    const ids = Array.from({ length: 600 }, (_, i) => String(1_700_000_000_000_000 + i * 10));
    const { xmpp, queries } = fakeArchive(ids);
    const committed: string[] = [];
    const result = await catchUp({
      xmpp,
      logger: createLogger("silent"),
      after: null,
      commit: async (items) => {
        committed.push(...items.map((i) => i.archiveId ?? ""));
      },
    });
    expect(new Set(committed)).toEqual(new Set(ids));
    expect(result).toMatchObject({ pages: 3, copies: 602, last: ids[599] });
    // Each page starts one below the previous page's last id (ids may collide), so the last
    // copy of a page is read again at the top of the next.
    expect(queries).toEqual([
      null,
      String(BigInt(ids[249] as string) - 1n),
      String(BigInt(ids[498] as string) - 1n),
    ]);
  });
});
