import { EventEmitter } from "node:events";
import { client } from "@xmpp/client";
import { describe, expect, it } from "vitest";
import { ignoreDataAfterStreamClosed } from "../../src/ingest/observer.js";

/** The connection internals xmpp.js 0.14 uses between its socket and its parser. */
interface Internals {
  parser: unknown;
  _attachSocket(socket: EventEmitter): void;
  _detachParser(): void;
}

function clientWithSocket(guarded: boolean) {
  const xmpp = client({ service: "xmpp://127.0.0.1:1", domain: "example.org" });
  xmpp.on("error", () => {});
  if (guarded) ignoreDataAfterStreamClosed(xmpp);
  const socket = new EventEmitter();
  const internals = xmpp as unknown as Internals;
  internals._attachSocket(socket);
  // What stop() does when the server has not closed its stream within the timeout.
  internals._detachParser();
  return socket;
}

describe("the observer's connection after a stream close that timed out", () => {
  it("crashes in xmpp.js when the server keeps sending (why the guard exists)", () => {
    const socket = clientWithSocket(false);
    expect(() => socket.emit("data", Buffer.from("<message/>"))).toThrow(TypeError);
  });

  it("drops what the server still sends instead", () => {
    const socket = clientWithSocket(true);
    expect(() => socket.emit("data", Buffer.from("<message/>"))).not.toThrow();
  });
});
