import type { Config } from "../config.js";
import { checkpointSource } from "../ingest/leader.js";
import type { Logger } from "../logger.js";
import { sleep } from "../retry.js";
import { ingestedUpTo } from "../store/checkpoint.js";
import type { Store } from "../store/db.js";
import { ApnsClient } from "./apns.js";
import { ApnsTokenSigner } from "./apns-token.js";
import { AppServer } from "./app-server.js";
import { loadPushCredentials } from "./credentials.js";
import { type DispatcherOptions, PushDispatcher, type PushSenders } from "./dispatcher.js";
import { FcmClient } from "./fcm.js";

/** Any fixed number other than the ingest lock's: every instance on a database agrees on it. */
export const PUSH_LOCK = 0x5e_c5_9a_5e;

/**
 * APNs and FCM clients for the credentials that are configured; a platform without is null.
 * Throws a ConfigError for a credential that cannot be used.
 */
export async function createPushSenders(push: Config["push"]): Promise<PushSenders> {
  const { apns, fcm } = await loadPushCredentials(push);
  return {
    apns: apns
      ? new ApnsClient({
          signer: new ApnsTokenSigner(apns.key, apns.keyId, apns.teamId),
          productionUrl: push.apns.productionUrl,
          sandboxUrl: push.apns.sandboxUrl,
          ...(apns.ca ? { ca: apns.ca } : {}),
        })
      : null,
    fcm: fcm
      ? new FcmClient({
          serviceAccount: fcm,
          baseUrl: push.fcm.baseUrl,
          ...(push.fcm.tokenUrl ? { tokenUrl: push.fcm.tokenUrl } : {}),
        })
      : null,
  };
}

export interface PushOptions {
  store: Store;
  config: Config;
  logger: Logger;
  signal: AbortSignal;
  senders?: PushSenders;
  onOutcome?: DispatcherOptions["onOutcome"];
  onWatched?: DispatcherOptions["onWatched"];
  standbyPollMs?: number;
  /** reports whether this instance serves publishes right now (readiness, tests) */
  onRole?: (role: "standby" | "leader" | "online") => void;
}

/**
 * ejabberd routes a component domain to one connection, and coalescing and back-off live in
 * memory, so one instance per database runs the app server: the holder of an advisory lock.
 * Others stand by and take over when its connection to PostgreSQL goes away.
 */
export async function runPush(o: PushOptions): Promise<void> {
  const log = o.logger.child({ part: "push" });
  const push = o.config.push;
  if (!push.componentSecret) return;
  const senders = o.senders ?? (await createPushSenders(push));
  if (!senders.apns) log.info("APNs credentials not set: APNs devices get no pushes");
  if (!senders.fcm) log.info("FCM service account not set: FCM devices get no pushes");
  while (!o.signal.aborted) {
    const lock = await o.store.tryLock(PUSH_LOCK).catch((err) => {
      log.warn({ err }, "could not ask for the push lock");
      return null;
    });
    if (!lock) {
      o.onRole?.("standby");
      await sleep(o.standbyPollMs ?? 2000, o.signal).catch(() => {});
      continue;
    }
    o.onRole?.("leader");
    log.info({ domain: push.componentDomain }, "push app server leader");
    const dispatcher = new PushDispatcher({
      store: o.store,
      logger: log,
      senders,
      coalesceMs: push.coalesceMs,
      ingestedUpTo: ingestedUpTo(o.store.db, checkpointSource(o.config)),
      ...(o.onOutcome ? { onOutcome: o.onOutcome } : {}),
      ...(o.onWatched ? { onWatched: o.onWatched } : {}),
    });
    const server = new AppServer({
      service: push.componentService,
      domain: push.componentDomain,
      secret: push.componentSecret,
      serverDomains: new Set([o.config.xmpp.domain]),
      dispatcher,
      logger: log,
      onOnline: () => o.onRole?.("online"),
    });
    const stopped = new Promise<void>((resolve) =>
      o.signal.addEventListener("abort", () => resolve(), { once: true }),
    );
    void server.start().catch(() => {});
    const reason = await Promise.race([
      lock.lost.then(() => "lock lost" as const),
      stopped.then(() => "stopping" as const),
    ]);
    log.info({ reason }, "push app server leadership ends");
    await server.stop();
    dispatcher.close();
    await lock.release().catch(() => {});
  }
  senders.apns?.close();
}
