import { connect, type Socket } from "node:net";
import type { EjabberdInstance, TestUser } from "./ejabberd.js";
import { waitFor } from "./wait.js";

/**
 * A client session spoken by hand over TCP, for what @xmpp/client cannot be made to do: here,
 * XEP-0198 enabled without resumption, never acknowledging, and then a connection lost without
 * a closing stream (a phone that drops off the network).
 */
export class RawSession {
  private text = "";

  private constructor(private readonly socket: Socket) {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      this.text += chunk;
    });
    socket.on("error", () => {});
  }

  /** Logs in with SASL PLAIN, binds `resource`, enables stream management and goes online. */
  static async open(i: EjabberdInstance, user: TestUser, resource: string): Promise<RawSession> {
    const socket = connect(i.c2sPort, "127.0.0.1");
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    const session = new RawSession(socket);
    const header = `<?xml version='1.0'?><stream:stream to='${i.domain}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`;
    session.write(header);
    await session.until(/<\/stream:features>/);
    const plain = Buffer.from(`\0${user.username}\0${user.password}`).toString("base64");
    session.write(
      `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${plain}</auth>`,
    );
    await session.until(/<success/);
    session.write(header);
    await session.until(/<bind[\s\S]*<\/stream:features>/);
    session.write(
      `<iq type='set' id='bind-1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${resource}</resource></bind></iq>`,
    );
    await session.until(/<jid>/);
    session.write("<enable xmlns='urn:xmpp:sm:3'/>");
    await session.until(/<enabled/);
    session.write("<presence/>");
    return session;
  }

  write(data: string): void {
    this.socket.write(data);
  }

  /** Waits until what the server sent matches `pattern`. */
  async until(pattern: RegExp): Promise<void> {
    await waitFor(() => pattern.test(this.text), {
      timeoutMs: 10_000,
      what: `the server to send ${pattern}`,
    });
  }

  /** Everything the server sent so far. */
  received(): string {
    return this.text;
  }

  /** Drops the connection as a lost network would: no </stream:stream>, no acknowledgement. */
  drop(): void {
    this.socket.destroy();
  }
}
