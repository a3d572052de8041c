import { randomBytes } from "node:crypto";
import { xml } from "@xmpp/client";
import { type Element, Parser } from "@xmpp/xml";
import type { Original } from "./traffic.js";

/** One copy as the observer's archive query returns it: wire text and the archive id. */
export interface RecordedCopy {
  wire: string;
  archiveId: string;
}

/**
 * Records copies in the exact shape mod_syncside on ejabberd 23.01 produces and MAM returns them
 * (see "parseCopy on a copy exactly as ejabberd 23.01 routes it" in test/unit/parse.test.ts): no
 * type on the copy, xml:lang added to the original, <delay/> after it, archive and stanza ids.
 * Archive ids are µs timestamps a few µs to a few ms apart, as concurrent sessions make them.
 */
export class CopyRecorder {
  private micros: bigint;

  constructor(
    private readonly domain: string,
    private readonly observer: string,
    startMs = Date.now() - 3_600_000,
  ) {
    this.micros = BigInt(startMs) * 1000n;
  }

  record(original: Original, rand: () => number): RecordedCopy {
    this.micros += BigInt(1 + Math.floor(rand() * 400));
    const archiveId = this.micros.toString();
    const senderArchiveId = (this.micros - 15n).toString();
    const seconds = new Date(Number(this.micros / 1000n)).toISOString().slice(0, 19);
    const stamp = `${seconds}.${(this.micros % 1_000_000n).toString().padStart(6, "0")}Z`;
    const copyId = `tap-${this.micros.toString(36)}-${randomBytes(10).toString("hex")}`;
    const sent = original.stanza;
    const inner = xml(
      "message",
      {
        "xml:lang": "en",
        to: original.to,
        from: original.from,
        type: "chat",
        id: sent.attrs.id,
        xmlns: "jabber:client",
      },
      ...sent.getChildElements(),
    );
    const copy = xml(
      "message",
      { to: this.observer, from: this.domain, id: copyId, xmlns: "jabber:client" },
      xml("archived", { by: this.observer, id: archiveId, xmlns: "urn:xmpp:mam:tmp" }),
      xml("stanza-id", { by: this.observer, id: archiveId, xmlns: "urn:xmpp:sid:0" }),
      xml(
        "forwarded",
        { xmlns: "urn:xmpp:forward:0" },
        inner,
        xml("delay", { stamp, xmlns: "urn:xmpp:delay" }),
      ),
      xml("tap", {
        xmlns: "urn:syncside:tap:0",
        "from-local": "true",
        "to-local": "true",
        "sender-archive-id": senderArchiveId,
      }),
      xml("store", { xmlns: "urn:xmpp:hints" }),
      xml("offline", { xmlns: "http://jabber.org/protocol/offline" }),
    );
    // As a socket hands it over: one flat string. The serializer's output is a rope of every
    // fragment it joined: 100k of them held 4.5 times the heap, which slowed the runs' GC.
    return { wire: Buffer.from(copy.toString()).toString(), archiveId };
  }
}

/**
 * The stream parser @xmpp/client runs on the observer's socket: each top-level stanza written
 * into it comes out as the Element ingest is handed.
 */
export class StanzaReader {
  private readonly parser = new Parser();
  private readonly out: Element[] = [];

  constructor() {
    this.parser.on("element", (element: Element) => this.out.push(element));
    this.parser.on("error", (error: Error) => {
      throw error;
    });
    this.parser.write(
      '<stream:stream xmlns="jabber:client" xmlns:stream="http://etherx.jabber.org/streams">',
    );
  }

  read(wire: string): Element {
    this.parser.write(wire);
    const element = this.out.pop();
    if (element === undefined || this.out.length > 0) throw new Error("not one stanza");
    // The stream root is no part of the stanza; the client detaches it the same way.
    element.parent = null;
    return element;
  }
}
