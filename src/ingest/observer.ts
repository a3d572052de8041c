import { StringDecoder } from "node:string_decoder";
import { type Client, client, xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import type { Logger } from "../logger.js";
import { retryForever, sleep } from "../retry.js";
import { readCheckpoint } from "../store/checkpoint.js";
import type { Store } from "../store/db.js";
import { sendSaslAsUtf8 } from "../xmpp/sasl-utf8.js";
import { catchUp, lookBack, NS_MAM } from "./catch-up.js";
import type { IngestItem, Pipeline } from "./pipeline.js";
import type { IngestStats } from "./stats.js";

const NS_SM = "urn:xmpp:sm:3";
const NS_SID = "urn:xmpp:sid:0";
const NS_FORWARD = "urn:xmpp:forward:0";
const NS_TAP = "urn:syncside:tap:0";
const NS_PING = "urn:xmpp:ping";

export interface ObserverOptions {
  service: string;
  domain: string;
  jid: string;
  password: string;
  resource: string;
  store: Store;
  pipeline: Pipeline;
  stats: IngestStats;
  logger: Logger;
  checkpointSource: string;
  /** how far behind the checkpoint each catch-up starts, in ms */
  lookBackMs: number;
  pingIntervalMs?: number;
  /** live copies waiting to be written above which the observer disconnects (see onStanza) */
  maxPendingLive?: number;
}

/**
 * Live copies come as fast as ejabberd routes them, whether the store keeps up or not: about
 * 1,000 a second, a few KB of heap each while they wait. Held for a database that is down, they
 * would fill the heap in minutes; 20,000 is tens of MB.
 */
const MAX_PENDING_LIVE = 20_000;

/**
 * Replaces the handler between xmpp.js 0.14's socket and its parser, which has two faults.
 * - It decodes each chunk on its own (`data.toString("utf8")`), so a character whose bytes two
 *   TCP reads split became two U+FFFD, and the copy was stored so: any non-ASCII text can
 *   straddle a read, and a catch-up reads megabytes. A decoder per socket keeps an unfinished
 *   character's bytes until the next chunk brings the rest.
 * - It drops its parser when stop() gives up waiting for the server's </stream> (2 s), yet the
 *   half-closed socket keeps delivering what the server still flushes; the next chunk then
 *   threw an uncaught TypeError that ended the process (xmppjs/xmpp.js#860), as happened when
 *   leadership ended under load. Such data is not needed: the archive holds every copy.
 * Must run before the first connect, which binds the socket's data listener.
 */
export function readStreamIntact(xmpp: Client): void {
  const connection = xmpp as unknown as {
    socket: object | null;
    parser: { write(text: string): void } | null;
    _onData(this: unknown, data: Buffer): void;
  };
  const decoders = new WeakMap<object, StringDecoder>();
  connection._onData = function (this: typeof connection, data: Buffer) {
    const { parser, socket } = this;
    if (!parser || !socket) return;
    let decoder = decoders.get(socket);
    if (!decoder) {
      decoder = new StringDecoder("utf8");
      decoders.set(socket, decoder);
    }
    parser.write(decoder.write(data));
  };
}

/**
 * Backs off xmpp.js's reconnects, which otherwise come every second forever: while the server is
 * down, and also while every login fails at catch-up (a refused archive query, a store that
 * fails), each attempt costing a SASL exchange. Each disconnect doubles the delay before the
 * next attempt, up to `maxMs`; `reset()` (once a connection has caught up) brings it back to
 * `initialMs`. xmpp.js reads the delay when a disconnect schedules the attempt, before this
 * grows it: the first attempt after a good connection comes after `initialMs`.
 */
export function backOffReconnects(
  xmpp: Client,
  { initialMs = 1000, maxMs = 30_000 }: { initialMs?: number; maxMs?: number } = {},
): { reset(): void } {
  const reconnect = (xmpp as unknown as { reconnect: { delay: number } }).reconnect;
  reconnect.delay = initialMs;
  xmpp.on("disconnect", () => {
    reconnect.delay = Math.min(reconnect.delay * 2, maxMs);
  });
  return {
    reset() {
      reconnect.delay = initialMs;
    },
  };
}

/**
 * Hides XEP-0198 from xmpp.js by removing it from the server's stream features before the
 * client sees them. Besides the observer's reason (see start): xmpp.js 0.14 sometimes acknowledges
 * more stanzas than ejabberd sent, and ejabberd then closes the stream.
 */
export function declineStreamManagement(xmpp: Client): void {
  xmpp.prependListener("element", (element: Element) => {
    if (element.is("features", "http://etherx.jabber.org/streams")) {
      element.children = element.children.filter(
        (c) => typeof c === "string" || !(c as Element).is("sm", NS_SM),
      );
    }
  });
}

/**
 * The observer account's session. On every (re)connect: catch up from the checkpoint without
 * presence (so no live copies interleave), send presence, catch up once more for what arrived
 * meanwhile, then take live copies; a look-back later, read the archive once more for copies
 * ejabberd wrote late (see settleLater). Live copies only move the checkpoint while no catch-up
 * is running, so a crash mid-catch-up can never make the next start skip unread archive pages.
 */
export class Observer {
  private xmpp: Client | null = null;
  private live = false;
  /** live copies handed to the pipeline and not written yet */
  private pendingLive = 0;
  private generation = 0;
  private pingTimer: NodeJS.Timeout | null = null;
  private settleTimer: NodeJS.Timeout | null = null;
  /** while the settling pass reads the archive again, live copies do not move the checkpoint */
  private settling = false;
  private readonly stopping = new AbortController();
  private backOff: { reset(): void } | null = null;

  constructor(private readonly o: ObserverOptions) {}

  /** Logs in, retrying until it succeeds or stop() is called; reconnects by itself after that. */
  async start(): Promise<void> {
    const [local] = this.o.jid.split("@");
    const xmpp = client({
      service: this.o.service,
      domain: this.o.domain,
      username: local,
      password: this.o.password,
      // A fixed resource: a restarted sidecar replaces its own stale session at once.
      resource: this.o.resource,
    });
    sendSaslAsUtf8(xmpp);
    this.xmpp = xmpp;
    readStreamIntact(xmpp);
    this.backOff = backOffReconnects(xmpp);

    // No stream management: catch-up makes resumption unnecessary, and without it ejabberd
    // never re-routes unacknowledged archive results into the observer's offline storage.
    declineStreamManagement(xmpp);
    xmpp.on("error", (err: Error) =>
      this.o.logger.warn({ err: err.message }, "observer connection error"),
    );
    xmpp.on("stanza", (stanza: Element) => this.onStanza(stanza));
    xmpp.on("offline", () => this.onDown());
    xmpp.on("disconnect", () => this.onDown());
    xmpp.on("online", () => {
      const generation = ++this.generation;
      void this.onOnline(generation).catch((err) => {
        this.o.logger.warn({ err }, "catch-up interrupted; it restarts at the next connection");
        if (generation === this.generation) void xmpp.disconnect().catch(() => {});
      });
    });

    await retryForever(
      async () => {
        // A refused login (the observer not registered yet, a wrong password, ejabberd's auth
        // backend still starting) leaves the stream open: start() only begins from offline,
        // and ejabberd closes an unauthenticated stream only after its own timeout.
        if (xmpp.status !== "offline") await xmpp.stop().catch(() => {});
        // stop() may have come meanwhile: a session started now would be nobody's.
        this.stopping.signal.throwIfAborted();
        return xmpp.start();
      },
      {
        signal: this.stopping.signal,
        onError: (err, delayMs) =>
          this.o.logger.warn(
            { err: String(err), retryInMs: delayMs },
            "observer login failed, retrying",
          ),
      },
    );
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    this.generation++;
    if (this.pingTimer) clearInterval(this.pingTimer);
    if (this.settleTimer) clearTimeout(this.settleTimer);
    const xmpp = this.xmpp;
    this.xmpp = null;
    this.onDown();
    if (!xmpp) return;
    xmpp.reconnect.stop();
    await Promise.race([xmpp.stop().catch(() => {}), sleep(3000)]);
  }

  private onDown(): void {
    this.live = false;
    this.o.stats.connected = false;
    this.o.stats.catchingUp = false;
  }

  private async onOnline(generation: number): Promise<void> {
    const xmpp = this.xmpp;
    if (!xmpp) return;
    // Without it, about every other request/answer pair waits ~40 ms on Nagle + delayed ACK.
    (xmpp.socket as unknown as { setNoDelay?: (on: boolean) => void } | null)?.setNoDelay?.(true);
    this.o.stats.connected = true;
    this.o.stats.catchingUp = true;
    this.o.logger.info({ jid: this.o.jid }, "observer online, catching up");

    // The observer must archive every copy, whatever the server's default policy is.
    await xmpp.iqCaller.set(xml("prefs", { xmlns: NS_MAM, default: "always" }));

    const first = await this.catchUpOnce(generation);
    await xmpp.send(xml("presence", {}, xml("priority", {}, "0")));
    const second = await this.catchUpOnce(generation);
    if (generation !== this.generation) return;
    this.live = true;
    this.o.stats.catchingUp = false;
    this.backOff?.reset();
    this.o.logger.info(
      {
        copies: first.copies + second.copies,
        pages: first.pages + second.pages,
        ms: first.ms + second.ms,
        commitWaitMs: first.commitWaitMs + second.commitWaitMs,
      },
      "caught up; following live copies",
    );
    this.startPing(generation);
    // Where the passes stopped; when they read nothing, where the last one started (never the
    // archive's beginning: a quiet server's catch-up reads nothing).
    this.settleLater(generation, second.last ?? first.last ?? second.after);
  }

  /**
   * ejabberd gives a copy its archive id (a µs timestamp) when it routes it, but writes it to the
   * archive when its turn in the SQL pool comes: under load, seconds later. A copy routed before
   * presence can therefore land in the archive, under an id the last pass has already read past,
   * after that pass. Live delivery never brings it (the observer was not available when it was
   * routed). So once the look-back has passed, the archive is read once more from the last pass's
   * end minus the look-back: the lag the look-back is sized for, as at every start.
   */
  private settleLater(generation: number, from: string | null): void {
    if (this.settleTimer) clearTimeout(this.settleTimer);
    this.settleTimer = setTimeout(() => {
      this.settleTimer = null;
      void this.settle(generation, from).catch((err) => {
        this.o.logger.warn({ err }, "settling pass interrupted; the next connection reads again");
      });
    }, this.o.lookBackMs);
    this.settleTimer.unref();
  }

  private async settle(generation: number, from: string | null): Promise<void> {
    const xmpp = this.xmpp;
    if (!xmpp || generation !== this.generation) return;
    this.settling = true;
    try {
      const result = await this.readArchive(xmpp, from);
      this.o.logger.info(
        { copies: result.copies, pages: result.pages, ms: result.ms },
        "archive read again for copies written late",
      );
    } finally {
      this.settling = false;
    }
  }

  private async catchUpOnce(generation: number) {
    const xmpp = this.xmpp;
    if (!xmpp || generation !== this.generation) throw new Error("observer session replaced");
    const row = await readCheckpoint(this.o.store.db, this.o.checkpointSource);
    return this.readArchive(xmpp, row?.position ?? null);
  }

  /**
   * Reads the archive into the pipeline from the look-back before `from` (from its beginning
   * for null) to its end; `after` says where the read started.
   */
  private async readArchive(xmpp: Client, from: string | null) {
    const after = from === null ? null : lookBack(from, this.o.lookBackMs * 1000);
    const result = await catchUp({
      xmpp,
      logger: this.o.logger,
      after,
      commit: (items) => this.o.pipeline.push(items),
    });
    return { ...result, after };
  }

  private onStanza(stanza: Element): void {
    if (!stanza.is("message") || stanza.getChild("result", NS_MAM)) return;
    if (
      !stanza.getChild("forwarded", NS_FORWARD) &&
      !stanza.getChild("tap", NS_TAP) &&
      !stanza.getChild("removed", NS_TAP)
    )
      return;
    const bare = this.o.jid;
    const sid = stanza.getChildren("stanza-id", NS_SID).find((s) => s.attrs.by === bare);
    const item: IngestItem = {
      copy: stanza,
      archiveId:
        this.live && !this.settling ? ((sid?.attrs.id as string | undefined) ?? null) : null,
    };
    this.pendingLive++;
    this.o.pipeline
      .push([item])
      .catch((err) => {
        this.o.logger.warn({ err }, "live copy not written; the next catch-up reads it again");
      })
      .finally(() => {
        this.pendingLive--;
      });
    // The store is not keeping up (the database is down, or slow): stop taking live copies.
    // Those received are kept and written when it can; the rest wait in the observer's archive
    // (or offline storage) for the next connection, whose catch-up waits on the store's commits
    // before it sends presence and lets live copies come again.
    if (this.live && this.pendingLive > (this.o.maxPendingLive ?? MAX_PENDING_LIVE)) {
      this.o.logger.warn(
        { pending: this.pendingLive },
        "live copies arrive faster than the store writes them; reconnecting to catch up instead",
      );
      this.live = false;
      void this.xmpp?.disconnect().catch(() => {});
    }
  }

  private startPing(generation: number): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    const interval = this.o.pingIntervalMs ?? 30_000;
    // XEP-0199: a silently dead TCP connection is otherwise not noticed until the OS gives up.
    this.pingTimer = setInterval(() => {
      const xmpp = this.xmpp;
      if (!xmpp || generation !== this.generation || !this.live) return;
      xmpp.iqCaller.get(xml("ping", { xmlns: NS_PING }), undefined, 10_000).catch(() => {
        this.o.logger.warn("observer ping unanswered; reconnecting");
        void xmpp.disconnect().catch(() => {});
      });
    }, interval);
    this.pingTimer.unref();
  }
}
