import { EventEmitter } from "node:events";
import { client } from "@xmpp/client";
import { type Element, Parser } from "@xmpp/xml";
import { describe, expect, it } from "vitest";
import { backOffReconnects, readStreamIntact } from "../../src/ingest/observer.js";

/** The connection internals xmpp.js 0.14 uses between its socket and its parser. */
interface Internals {
  parser: unknown;
  _attachSocket(socket: EventEmitter): void;
  _attachParser(parser: unknown): void;
  _detachParser(): void;
}

function clientWithSocket(guarded: boolean) {
  const xmpp = client({ service: "xmpp://127.0.0.1:1", domain: "example.org" });
  xmpp.on("error", () => {});
  if (guarded) readStreamIntact(xmpp);
  const socket = new EventEmitter();
  const internals = xmpp as unknown as Internals;
  internals._attachSocket(socket);
  return { xmpp, socket, internals };
}

describe("the observer's connection after a stream close that timed out", () => {
  function closedTooSoon(guarded: boolean) {
    const { socket, internals } = clientWithSocket(guarded);
    // What stop() does when the server has not closed its stream within the timeout.
    internals._detachParser();
    return socket;
  }

  it("crashes in xmpp.js when the server keeps sending (why the guard exists)", () => {
    const socket = closedTooSoon(false);
    expect(() => socket.emit("data", Buffer.from("<message/>"))).toThrow(TypeError);
  });

  it("drops what the server still sends instead", () => {
    const socket = closedTooSoon(true);
    expect(() => socket.emit("data", Buffer.from("<message/>"))).not.toThrow();
  });
});

describe("the observer's connection reading characters split between TCP reads", () => {
  const TEXT = "é € 😀 中文";
  const STANZA = Buffer.from(`<message id="m1"><body>${TEXT}</body></message>`);

  /** Feeds a stream with the stanza cut inside each multi-byte character; returns the bodies. */
  function bodiesRead(guarded: boolean): string[] {
    const { xmpp, socket, internals } = clientWithSocket(guarded);
    internals._attachParser(new Parser());
    const bodies: string[] = [];
    xmpp.on("element", (el: Element) => bodies.push(el.getChildText("body") ?? ""));
    socket.emit(
      "data",
      Buffer.from(
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
      ),
    );
    const start = STANZA.indexOf("<body>") + "<body>".length;
    for (let cut = start; cut < start + Buffer.byteLength(TEXT); cut++) {
      socket.emit("data", STANZA.subarray(0, cut));
      socket.emit("data", STANZA.subarray(cut));
    }
    return bodies;
  }

  it("corrupts them in xmpp.js as shipped (why the decoder exists)", () => {
    expect(bodiesRead(false).filter((b) => b !== TEXT).length).toBeGreaterThan(0);
  });

  it("reads every one intact", () => {
    const bodies = bodiesRead(true);
    expect(bodies.length).toBe(Buffer.byteLength(TEXT));
    expect(new Set(bodies)).toEqual(new Set([TEXT]));
  });
});

describe("the observer's reconnects", () => {
  it("come later after each failed attempt, up to a ceiling, and soon again once caught up", () => {
    const xmpp = client({ service: "xmpp://127.0.0.1:1", domain: "example.org" });
    const reconnect = (xmpp as unknown as { reconnect: { delay: number; stop(): void } }).reconnect;
    reconnect.stop();
    const backOff = backOffReconnects(xmpp, { initialMs: 1000, maxMs: 8000 });
    const delays: number[] = [];
    for (let i = 0; i < 6; i++) {
      // What xmpp.js schedules the attempt after, then the disconnect the attempt ends in.
      delays.push(reconnect.delay);
      xmpp.emit("disconnect", { clean: false });
    }
    expect(delays).toEqual([1000, 2000, 4000, 8000, 8000, 8000]);
    backOff.reset();
    expect(reconnect.delay).toBe(1000);
  });
});
