import { connect, createServer, type Server, type Socket } from "node:net";

/** What crossed the proxy since the last `take()`. */
export interface WireCount {
  /** payload bytes client → server */
  bytesUp: number;
  /** payload bytes server → client */
  bytesDown: number;
  /** times the server answered after the client had sent: request/response exchanges */
  roundTrips: number;
  connections: number;
}

const zero = (): WireCount => ({ bytesUp: 0, bytesDown: 0, roundTrips: 0, connections: 0 });

/**
 * A TCP proxy on loopback that holds every chunk `delayMs` before passing it on, each way, so a
 * request/response pair costs 2 × delayMs as on a mobile link (the kernel's netem is not
 * available here). A new connection's first bytes wait one round trip more, as the TCP handshake
 * of a real link would make them. Counts bytes and round trips per direction change.
 */
export class DelayProxy {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private count = zero();

  constructor(
    private readonly target: { host: string; port: number },
    private readonly delayMs: number,
  ) {
    this.server = createServer((client) => this.accept(client));
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(0, "127.0.0.1", () => {
        const address = this.server.address();
        if (typeof address === "object" && address) resolve(address.port);
        else reject(new Error("no port"));
      });
    });
  }

  /** The counts since the previous call. */
  take(): WireCount {
    const count = this.count;
    this.count = zero();
    return count;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    const upstream = connect(this.target.port, this.target.host);
    for (const socket of [client, upstream]) {
      // The proxy must not add a Nagle delay of its own on top of the one it simulates.
      socket.setNoDelay(true);
      this.sockets.add(socket);
      socket.on("close", () => this.sockets.delete(socket));
      socket.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    this.count.connections++;
    const up = new DelayedLine(
      (chunk) => upstream.write(chunk),
      () => upstream.end(),
    );
    const down = new DelayedLine(
      (chunk) => client.write(chunk),
      () => client.end(),
    );
    let clientSpoke = false;
    let handshake = this.delayMs * 2;
    client.on("data", (chunk: Buffer) => {
      this.count.bytesUp += chunk.length;
      clientSpoke = true;
      up.send(chunk, this.delayMs + handshake);
      handshake = 0;
    });
    upstream.on("data", (chunk: Buffer) => {
      this.count.bytesDown += chunk.length;
      if (clientSpoke) this.count.roundTrips++;
      clientSpoke = false;
      down.send(chunk, this.delayMs);
    });
    // A half-close travels like data, after what was sent before it.
    client.on("end", () => up.send(null, this.delayMs));
    upstream.on("end", () => down.send(null, this.delayMs));
  }
}

/** One direction of a connection: chunks leave in arrival order, each no sooner than its delay. */
class DelayedLine {
  private readonly queue: { at: number; chunk: Buffer | null }[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly write: (chunk: Buffer) => void,
    private readonly end: () => void,
  ) {}

  /** `null` ends the line. */
  send(chunk: Buffer | null, delayMs: number): void {
    const last = this.queue.at(-1)?.at ?? 0;
    this.queue.push({ at: Math.max(performance.now() + delayMs, last), chunk });
    if (this.timer === null) this.drain();
  }

  private drain(): void {
    this.timer = null;
    const now = performance.now();
    while (this.queue.length > 0 && (this.queue[0]?.at ?? 0) <= now) {
      const { chunk } = this.queue.shift() as { chunk: Buffer | null };
      if (chunk === null) this.end();
      else this.write(chunk);
    }
    const next = this.queue[0];
    if (next) this.timer = setTimeout(() => this.drain(), Math.max(0, next.at - now));
  }
}
