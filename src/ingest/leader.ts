import type { Config } from "../config.js";
import type { Logger } from "../logger.js";
import { sleep } from "../retry.js";
import type { Store } from "../store/db.js";
import { StoreUpkeep } from "../store/upkeep.js";
import { Observer } from "./observer.js";
import { Pipeline } from "./pipeline.js";
import type { IngestStats } from "./stats.js";

/** Any fixed number: every syncside instance on a database agrees on it. */
export const INGEST_LOCK = 0x5e_c5_1d_e1;

export interface IngestOptions {
  store: Store;
  config: Config;
  logger: Logger;
  stats: IngestStats;
  signal: AbortSignal;
  standbyPollMs?: number;
  /** see ObserverOptions.maxPendingLive */
  maxPendingLive?: number;
}

/** Whether a bare JID belongs to one of this server's domains. */
export function localTo(domains: ReadonlySet<string>): (jid: string) => boolean {
  return (jid) => {
    const at = jid.lastIndexOf("@");
    return at > 0 && domains.has(jid.slice(at + 1));
  };
}

/** The checkpoints row ingest advances; every instance observing this account shares it. */
export function checkpointSource(config: Config): string {
  return `observer:${config.xmpp.observerJid}`;
}

/**
 * Exactly one ingest per database: the holder of a PostgreSQL advisory lock leads; others stand
 * by, polling the lock, and take over within seconds when the leader's connection goes away.
 */
export async function runIngest(o: IngestOptions): Promise<void> {
  const log = o.logger.child({ part: "ingest" });
  const domains = new Set([o.config.xmpp.domain]);
  const source = checkpointSource(o.config);
  while (!o.signal.aborted) {
    const lock = await o.store.tryLock(INGEST_LOCK).catch((err) => {
      log.warn({ err }, "could not ask for the ingest lock");
      return null;
    });
    if (!lock) {
      if (o.stats.role !== "standby") log.info("another instance is ingesting; standing by");
      o.stats.role = "standby";
      await sleep(o.standbyPollMs ?? 2000, o.signal).catch(() => {});
      continue;
    }
    o.stats.role = "leader";
    log.info("ingest leader");
    const upkeep = new StoreUpkeep({ store: o.store, logger: log });
    const pipeline = new Pipeline({
      store: o.store,
      logger: log,
      stats: o.stats,
      write: {
        isLocal: localTo(domains),
        callRingTimeoutMs: o.config.callRingTimeoutMs,
        callMaxDurationMs: o.config.callMaxDurationMs,
      },
      trustedOrigins: domains,
      checkpointSource: source,
      lanes: o.config.ingestLanes,
      upkeep,
    });
    const observer = new Observer({
      service: o.config.xmpp.service,
      domain: o.config.xmpp.domain,
      jid: o.config.xmpp.observerJid,
      password: o.config.xmpp.observerPassword,
      resource: o.config.xmpp.observerResource,
      store: o.store,
      pipeline,
      stats: o.stats,
      logger: log,
      checkpointSource: source,
      lookBackMs: o.config.ingestLookBackMs,
      maxPendingLive: o.maxPendingLive,
    });
    const stopped = new Promise<void>((resolve) =>
      o.signal.addEventListener("abort", () => resolve(), { once: true }),
    );
    const ended = Promise.race([
      lock.lost.then(() => "lock lost" as const),
      stopped.then(() => "stopping" as const),
    ]);
    void observer.start().catch(() => {});
    const reason = await ended;
    log.info({ reason }, "ingest leadership ends");
    await observer.stop();
    await Promise.race([pipeline.drain(), sleep(5000)]);
    pipeline.close();
    await upkeep.idle();
    await lock.release().catch(() => {});
    o.stats.role = "standby";
    o.stats.connected = false;
    // A standby is behind nothing: its last batch's lag no longer says anything.
    o.stats.lastLagMs = null;
  }
}
