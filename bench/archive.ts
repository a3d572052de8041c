import { type Client, client, xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import type { EjabberdInstance } from "../test/helpers/ejabberd.js";

const NS_MAM = "urn:xmpp:mam:2";
const NS_RSM = "http://jabber.org/protocol/rsm";

/**
 * A session of the observer account for reading its archive: no presence (so live copies keep
 * going to the archive only) and no stream management (so ejabberd never re-queues archive
 * results it thinks were not acknowledged), like ingest's own session.
 */
export async function observerSession(i: EjabberdInstance, resource: string): Promise<Client> {
  const xmpp = client({
    service: i.service,
    domain: i.domain,
    username: i.observerJid.split("@")[0],
    password: i.observerPassword,
    resource,
  });
  xmpp.prependListener("element", (element: Element) => {
    if (element.is("features", "http://etherx.jabber.org/streams")) {
      element.children = element.children.filter(
        (c) => typeof c === "string" || !(c as Element).is("sm", "urn:xmpp:sm:3"),
      );
    }
  });
  xmpp.on("error", () => {});
  xmpp.on("online", () => {
    (xmpp.socket as unknown as { setNoDelay?: (on: boolean) => void } | null)?.setNoDelay?.(true);
  });
  await xmpp.start();
  return xmpp;
}

/**
 * A second observer session with presence, which gets every live copy too: `onCopy` is told
 * the id of each copy's original as it arrives, for when ejabberd hands a copy out (its own
 * pace and share of the lag). Stop it when done.
 */
export async function watchCopies(
  i: EjabberdInstance,
  resource: string,
  onCopy: (originalId: string) => void,
): Promise<Client> {
  const witness = await observerSession(i, resource);
  witness.on("stanza", (stanza: Element) => {
    const id = stanza.getChild("forwarded", "urn:xmpp:forward:0")?.getChild("message")?.attrs.id;
    if (typeof id === "string") onCopy(id);
  });
  await witness.send(xml("presence", {}, xml("priority", {}, "0")));
  return witness;
}

async function query(xmpp: Client, set: Element): Promise<Element | undefined> {
  // iqCaller.set would look for a <query/> child; MAM answers with <fin/>.
  const answer = await xmpp.iqCaller.request(
    xml(
      "iq",
      { type: "set" },
      xml("query", { xmlns: NS_MAM, queryid: `bench-${Date.now()}` }, set),
    ),
    60_000,
  );
  return answer.getChild("fin", NS_MAM)?.getChild("set", NS_RSM);
}

/** How many copies the observer's archive holds (RSM count, no items sent). */
export async function archiveCount(xmpp: Client): Promise<number> {
  const set = await query(xmpp, xml("set", { xmlns: NS_RSM }, xml("max", {}, "0")));
  return Number(set?.getChildText("count") ?? 0);
}

/** The newest archive id, or null for an empty archive. */
export async function archiveLast(xmpp: Client): Promise<string | null> {
  const set = await query(
    xmpp,
    xml("set", { xmlns: NS_RSM }, xml("max", {}, "1"), xml("before", {})),
  );
  return set?.getChildText("last") ?? null;
}
