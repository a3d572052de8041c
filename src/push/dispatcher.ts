import { createHash } from "node:crypto";
import { setMaxListeners } from "node:events";
import { and, desc, eq, gt, inArray, isNull, lte, or } from "drizzle-orm";
import { type ChangeSubscription, changeFeedFor } from "../api/change-feed.js";
import { encodePosition } from "../api/position.js";
import type { Logger } from "../logger.js";
import { sleep } from "../retry.js";
import { activeCalls, type CallRow } from "../store/calls.js";
import type { Store, Tx } from "../store/db.js";
import { MESSAGE_KEY_OF_EVENT } from "../store/events.js";
import { loadStoreMeta } from "../store/meta.js";
import { accounts } from "../store/schema/accounts.js";
import { conversations } from "../store/schema/conversations.js";
import { events } from "../store/schema/events.js";
import { messages } from "../store/schema/messages.js";
import { pushDeliveries } from "../store/schema/push-deliveries.js";
import type { PushPlatform } from "../store/schema/push-devices.js";
import type { ApnsClient } from "./apns.js";
import {
  disableDevice,
  dropVoipToken,
  findDevice,
  markAlerted,
  type PushDevice,
  secretMatches,
} from "./devices.js";
import type { FcmClient } from "./fcm.js";
import {
  apnsAlertPayload,
  apnsVoipPayload,
  type CallNotice,
  fcmAlertData,
  fcmCallData,
  type MessageNotice,
} from "./payload.js";
import { type SendFailure, type SendResult, sendWithRetries } from "./provider.js";

/**
 * The answer to ejabberd's publish. ejabberd's mod_push keeps the registration on success and on
 * an error of type `wait`, and deletes it on any other error type.
 */
export type PublishAnswer =
  | { ok: true }
  | { ok: false; type: "cancel" | "auth" | "modify" | "wait"; condition: string; text: string };

export type PushKind = "voip" | "alert";
export type PushOutcome =
  | "sent"
  | "coalesced"
  | "deferred"
  | "throttled"
  | "unregistered"
  | "bad_token"
  | "failed"
  | "not_configured";

export interface PushSenders {
  apns: ApnsClient | null;
  fcm: FcmClient | null;
}

export interface DispatcherOptions {
  store: Store;
  logger: Logger;
  senders: PushSenders;
  /** at most one alert per device per this many ms; later publishes in the window coalesce */
  coalesceMs: number;
  /** how long a publish's answer may wait for ingest to store the stanza behind it */
  catchUpMs?: number;
  /**
   * Up to when ingest has stored what ejabberd archived (epoch ms of its checkpoint; null before
   * it stored anything). A publish that found nothing while ingest was behind it is not taken as
   * one with nothing to push: the device is looked at again once ingest has caught up. Without
   * it, ingest counts as always caught up.
   */
  ingestedUpTo?: () => Promise<number | null>;
  /** how long a device is watched for ingest to reach its publish (default 10 min) */
  ingestWaitMs?: number;
  /** told how many devices are watched, whenever that changes: wire to a gauge */
  onWatched?: (devices: number) => void;
  /**
   * after a call's push found the provider unavailable (all retries spent), when to try that
   * device again by itself: ejabberd publishes once per stanza, and a call rings only so long
   */
  callRetryMs?: number;
  /**
   * after an alert found the provider unavailable (all retries spent), when to try that device
   * again by itself (default 5 s), doubling with each such failure in a row up to 5 min: an
   * alert that ejabberd is answered `wait` for is published no more
   */
  alertRetryMs?: number;
  clock?: () => number;
  /** one call per push decision: wire to the push outcome counter */
  onOutcome?: (platform: PushPlatform, kind: PushKind, outcome: PushOutcome) => void;
}

interface Work {
  call: CallRow | null;
  message: {
    seq: number;
    peer: string;
    messageId: string | null;
    body: string;
    sentAt: Date;
    unreadCount: number;
  } | null;
  lastSeq: number;
  accountJid: string;
}

const OK: PublishAnswer = { ok: true };
const GONE: PublishAnswer = {
  ok: false,
  type: "cancel",
  condition: "item-not-found",
  text: "no push device with this node",
};

/**
 * Decides, per publish, what a device should get from the store's point of view: a VoIP push for
 * a ringing incoming call it has not been rung for, else one encrypted alert for the newest
 * unread incoming message it has not been alerted about; and, while ingest has not stored what
 * a publish was for, looks again as it does (see watchIngest). Work for one device is
 * serialized, so two publishes in a burst never race for the same call or message.
 */
export class PushDispatcher {
  private readonly chains = new Map<string, Promise<unknown>>();
  private readonly lastAlertAt = new Map<string, number>();
  /** per device and kind of push: a throttled alert must not hold up a call's ring */
  private readonly backoffUntil = new Map<string, number>();
  /** per device, how many alerts in a row found the provider unavailable */
  private readonly unavailableAlerts = new Map<string, number>();
  private readonly followUps = new Map<
    string,
    { at: number; timer: NodeJS.Timeout; limit: Limit | null }
  >();
  /** per device, the account's last seq as the device's last look saw it */
  private readonly lookedUpTo = new Map<string, number>();
  /** per device, when its newest publish arrived, until ingest is known to have reached it */
  private readonly unconfirmed = new Map<string, number>();
  /** devices waiting in the background for ingest to reach their publish */
  private readonly awaitingIngest = new Set<string>();
  /**
   * per device, when the message a look limited by send time alerted was sent: older messages
   * are covered by that alert, newer ones, stored already or not, still to come
   */
  private readonly alertedThrough = new Map<string, Date>();
  private readonly stopping = new AbortController();
  private readonly clock: () => number;
  private closed = false;

  constructor(private readonly o: DispatcherOptions) {
    this.clock = o.clock ?? Date.now;
    // Every waiting device listens for it: one listener each, not a leak.
    setMaxListeners(0, this.stopping.signal);
  }

  /** Handles ejabberd's publish for `node`, authenticated by the device's secret. */
  async publish(node: string, secret: string | null): Promise<PublishAnswer> {
    const arrivedAt = this.clock();
    const device = await findDevice(this.o.store.db, { node });
    if (!device) return GONE;
    if (secret === null || !secretMatches(device, secret)) {
      this.o.logger.warn({ deviceId: device.id }, "publish with a wrong secret refused");
      return { ok: false, type: "auth", condition: "forbidden", text: "wrong secret" };
    }
    if (device.disabledAt) return GONE;
    this.unconfirmed.set(device.id, Math.max(this.unconfirmed.get(device.id) ?? 0, arrivedAt));
    return this.serialized(device.id, () =>
      this.deliver(device.id, arrivedAt + (this.o.catchUpMs ?? 1000)),
    );
  }

  close(): void {
    this.closed = true;
    this.stopping.abort();
    for (const { timer } of this.followUps.values()) clearTimeout(timer);
    this.followUps.clear();
  }

  private serialized<T>(deviceId: string, task: () => Promise<T>): Promise<T> {
    const previous = this.chains.get(deviceId) ?? Promise.resolve();
    const next = previous.catch(() => {}).then(task);
    const tail = next.catch(() => {});
    this.chains.set(deviceId, tail);
    void tail.then(() => {
      if (this.chains.get(deviceId) === tail) this.chains.delete(deviceId);
    });
    return next;
  }

  /**
   * Runs a delivery for the device later (end of a coalescing window or back-off), with the
   * limit of the look that asked for it; of two asked for, the earlier time and the wider limit.
   */
  private followUp(deviceId: string, at: number, limit: Limit | null): void {
    if (this.closed) return;
    const existing = this.followUps.get(deviceId);
    const wider = existing ? widest(existing.limit, limit) : limit;
    if (existing && existing.at <= at) {
      existing.limit = wider;
      return;
    }
    if (existing) clearTimeout(existing.timer);
    const timer = setTimeout(
      () => {
        const due = this.followUps.get(deviceId);
        this.followUps.delete(deviceId);
        void this.serialized(deviceId, () =>
          this.deliver(deviceId, this.clock(), due?.limit ?? null),
        ).catch((err) => this.o.logger.error({ err, deviceId }, "delayed push failed"));
      },
      Math.max(0, at - this.clock()),
    );
    timer.unref();
    this.followUps.set(deviceId, { at, timer, limit: wider });
  }

  /**
   * Looks at the store for the device and pushes what is due; with a limit, only among what it
   * allows (see watchIngest). Whatever it found, the device is watched while ingest is behind its
   * newest publish: ejabberd publishes once per stanza, and until ingest has stored it, what a
   * look finds may not be what the publish was for.
   */
  private async deliver(
    deviceId: string,
    deadline: number,
    limit: Limit | null = null,
  ): Promise<PublishAnswer> {
    const device = await findDevice(this.o.store.db, { id: deviceId });
    if (!device || device.disabledAt) {
      this.unavailableAlerts.delete(deviceId);
      return GONE;
    }
    let answer: PublishAnswer | undefined;
    try {
      answer = await this.deliverTo(device, deadline, limit);
      return answer;
    } finally {
      // Also when the look failed: the database that failed it may be what holds ingest back.
      if (answer !== GONE) await this.watchWhileBehind(device);
    }
  }

  private async deliverTo(
    device: PushDevice,
    deadline: number,
    limit: Limit | null,
  ): Promise<PublishAnswer> {
    const now = this.clock();
    const work = await this.waitForWork(device, deadline, limit);
    this.lookedUpTo.set(device.id, Math.max(this.lookedUpTo.get(device.id) ?? 0, work.lastSeq));
    // A call the provider throttles rings when its back-off ends; an alert may go meanwhile.
    if (work.call && !this.backedOff(device, "voip", now, limit)) {
      return this.sendCall(device, work.call, work, limit);
    }
    if (!work.message) {
      // Nothing up to here will ever need an alert (read and retracted stay so, a message that
      // came while muted is never alerted, and later writes get later seqs): the next publish
      // need not look at it again. A look limited to what was sent by some time cannot say so
      // of what was sent later.
      if (!limit) {
        await this.markAlerted(device, work.lastSeq);
        // Read or taken back meanwhile: an alert still to retry is no longer due.
        this.unavailableAlerts.delete(device.id);
      }
      return OK;
    }
    if (this.backedOff(device, "alert", now, limit)) return OK;

    const last = this.lastAlertAt.get(device.id);
    if (last !== undefined && now - last < this.o.coalesceMs) {
      // A watch's look finding the same message again while it waits is no new decision.
      if (!(limit && this.followUps.has(device.id))) this.outcome(device, "alert", "coalesced");
      this.followUp(device.id, last + this.o.coalesceMs, limit);
      return OK;
    }
    return this.sendAlert(device, work.message, work, limit);
  }

  /** Whether the provider throttles this kind of push to the device; if so, it is sent later. */
  private backedOff(device: PushDevice, kind: PushKind, now: number, limit: Limit | null): boolean {
    const until = this.backoffUntil.get(backoffKey(device.id, kind)) ?? 0;
    if (until <= now) return false;
    // A watch's look finding it again while the back-off lasts is no new decision.
    if (!(limit && this.followUps.has(device.id))) this.outcome(device, kind, "deferred");
    this.followUp(device.id, until, limit);
    return true;
  }

  /** Starts watching the device if ingest has not yet reached its newest publish. */
  private async watchWhileBehind(device: PushDevice): Promise<void> {
    const publishedAt = this.unconfirmed.get(device.id);
    if (publishedAt === undefined || this.awaitingIngest.has(device.id)) return;
    const reached = await this.ingestReached(publishedAt).catch(() => false);
    if (reached) {
      this.confirm(device.id, publishedAt);
      return;
    }
    if (this.closed) return;
    this.awaitingIngest.add(device.id);
    this.o.onWatched?.(this.awaitingIngest.size);
    void this.watchIngest(device)
      .catch((err) => this.o.logger.error({ err, deviceId: device.id }, "delayed push failed"))
      .finally(() => {
        this.awaitingIngest.delete(device.id);
        this.o.onWatched?.(this.awaitingIngest.size);
      });
  }

  /**
   * Done with the device's publish of `publishedAt`, unless a newer one came meanwhile; says
   * whether it was still the newest.
   */
  private confirm(deviceId: string, publishedAt: number): boolean {
    if (this.unconfirmed.get(deviceId) !== publishedAt) return false;
    this.unconfirmed.delete(deviceId);
    return true;
  }

  /**
   * Whether ingest has stored everything ejabberd archived up to a publish: its checkpoint is
   * past the publish's arrival, by more than ejabberd's clock may run ahead of this one.
   */
  private async ingestReached(publishedAt: number): Promise<boolean> {
    if (!this.o.ingestedUpTo) return true;
    const upTo = await this.o.ingestedUpTo();
    return upTo !== null && upTo >= publishedAt + CLOCK_SKEW_MS;
  }

  /**
   * While ingest is behind the device's newest publish, looks again whenever ingest stores
   * something for the account. These looks push only what was stored since the device's last
   * look (what that look found, pushed or not, is not tried again) and sent before the publish
   * (give or take the clocks' skew): a stanza sent later had a publish of its own if the phone
   * still slept, and none if it had woken meanwhile. The checkpoint moves with stored copies only,
   * so on a quiet server the watch lasts until later traffic, or `ingestWaitMs`, when it ends:
   * nothing is lost by that. The waiting lives in this process: a new push leader does not take
   * it over.
   */
  private async watchIngest(device: PushDevice): Promise<void> {
    const feed = changeFeedFor(this.o.store, this.o.logger);
    let subscription: ChangeSubscription | null = null;
    // Whether the account changed since the last look; at first, found out once subscribed.
    let changed: boolean | null = null;
    try {
      while (!this.closed) {
        const publishedAt = this.unconfirmed.get(device.id);
        if (publishedAt === undefined) return;
        if (this.clock() - publishedAt > (this.o.ingestWaitMs ?? INGEST_WAIT_MS)) {
          this.confirm(device.id, publishedAt);
          // Not a warning: on a quiet server, most watches end so.
          this.o.logger.debug(
            { deviceId: device.id, publishedAt: new Date(publishedAt) },
            "stopped waiting for ingest to reach a publish",
          );
          return;
        }
        try {
          subscription ??= await feed.subscribe(device.accountId);
          changed ??=
            (await this.accountSeq(device.accountId)) > (this.lookedUpTo.get(device.id) ?? 0);
          const reached = await this.ingestReached(publishedAt);
          if (changed) {
            const answer = await this.serialized(device.id, async () => {
              if (this.closed) return OK;
              const current = await findDevice(this.o.store.db, { id: device.id });
              if (!current || current.disabledAt) return GONE;
              return this.deliverTo(current, this.clock(), {
                sentUpTo: new Date(publishedAt + CLOCK_SKEW_MS),
                storedAfter: this.lookedUpTo.get(device.id) ?? 0,
              });
            });
            if (answer === GONE) {
              this.unconfirmed.delete(device.id);
              return;
            }
          }
          if (reached) {
            if (this.confirm(device.id, publishedAt)) return;
            // A newer publish came meanwhile: its own look left the watch to this one.
            changed = null;
            continue;
          }
          changed = await subscription.wait(INGEST_POLL_MS, this.stopping.signal);
        } catch (err) {
          // A database that fails now may answer again: the wait is bounded above, not here.
          this.o.logger.warn({ err, deviceId: device.id }, "waiting for ingest failed; retrying");
          subscription?.close();
          subscription = null;
          changed = true;
          await sleep(INGEST_POLL_MS, this.stopping.signal).catch(() => {});
        }
      }
    } finally {
      subscription?.close();
    }
  }

  private async accountSeq(accountId: number): Promise<number> {
    const [row] = await this.o.store.db
      .select({ lastSeq: accounts.lastSeq })
      .from(accounts)
      .where(eq(accounts.id, accountId));
    return row?.lastSeq ?? 0;
  }

  /**
   * A publish can overtake ingest: ejabberd publishes while it routes the stanza, and the copy
   * reaches the store a few ms later. Wait (bounded) until the store shows something new for
   * this device, woken by ingest's NOTIFY for the account.
   */
  private async waitForWork(
    device: PushDevice,
    deadline: number,
    limit: Limit | null,
  ): Promise<Work> {
    const subscription = await changeFeedFor(this.o.store, this.o.logger).subscribe(
      device.accountId,
    );
    try {
      for (;;) {
        const work = await this.findWork(device, limit);
        const left = deadline - this.clock();
        if (work.call || work.message || left <= 0) return work;
        await subscription.wait(left, AbortSignal.timeout(left + 100));
      }
    } finally {
      subscription.close();
    }
  }

  /**
   * Reads in one snapshot, as a sync does: a commit between separate reads could give a position
   * older than the message the push carries, and the sync from it would show the message again.
   */
  private findWork(device: PushDevice, limit: Limit | null): Promise<Work> {
    return this.o.store.db.transaction((tx) => this.readWork(tx, device, limit), {
      isolationLevel: "repeatable read",
      accessMode: "read only",
    });
  }

  private async readWork(db: Tx, device: PushDevice, limit: Limit | null): Promise<Work> {
    const now = new Date(this.clock());
    const alertedThrough = this.alertedThrough.get(device.id);
    const [account] = await db
      .select({ jid: accounts.jid, lastSeq: accounts.lastSeq })
      .from(accounts)
      .where(eq(accounts.id, device.accountId));
    let call: CallRow | null = null;
    if (canRing(device)) {
      const ringing = (await activeCalls(db, device.accountId, now)).filter(
        (c) =>
          c.direction === "in" &&
          (c.state === "proposed" || c.state === "ringing") &&
          (!limit ||
            ((!c.proposedAt || c.proposedAt <= limit.sentUpTo) && c.seq > limit.storedAfter)),
      );
      if (ringing.length > 0) {
        const pushed = await db
          .select({ callId: pushDeliveries.callId })
          .from(pushDeliveries)
          .where(
            and(
              eq(pushDeliveries.deviceId, device.id),
              inArray(
                pushDeliveries.callId,
                ringing.map((c) => c.callId),
              ),
            ),
          );
        const done = new Set(pushed.map((p) => p.callId));
        call = ringing.find((c) => !done.has(c.callId)) ?? null;
      }
    }
    // The newest incoming message since the last alert by when it was sent, as the phone will
    // list it (catch-up writes older messages after newer ones), in its current state: edited
    // text, and none that its sender took back nor any the account has read (on another
    // device, or before the phone slept: a publish for a reaction must not alert it again).
    const [message] = await db
      .select({
        seq: events.seq,
        peer: conversations.peerJid,
        messageId: messages.messageId,
        body: messages.body,
        sentAt: messages.sentAt,
        unreadCount: conversations.unreadCount,
      })
      .from(events)
      .innerJoin(
        conversations,
        and(
          eq(conversations.accountId, events.accountId),
          eq(conversations.id, events.conversationId),
        ),
      )
      .innerJoin(
        messages,
        and(
          eq(messages.accountId, events.accountId),
          eq(messages.conversationId, events.conversationId),
          eq(messages.direction, "in"),
          // Only the event of the message stored: of two with one id, the one sent later.
          eq(messages.sentAt, events.sentAt),
          eq(messages.messageId, MESSAGE_KEY_OF_EVENT),
        ),
      )
      .where(
        and(
          eq(events.accountId, device.accountId),
          eq(events.kind, "message"),
          eq(events.direction, "in"),
          gt(events.seq, device.alertedSeq),
          isNull(messages.retractedAt),
          or(isNull(conversations.readAt), gt(messages.sentAt, conversations.readAt)),
          // A muted conversation does not light up the phone, nor later a message that came
          // while it was (ingest may store it after the mute ended).
          or(
            isNull(conversations.mutedUntil),
            and(lte(conversations.mutedUntil, now), lte(conversations.mutedUntil, messages.sentAt)),
          ),
          limit ? lte(messages.sentAt, limit.sentUpTo) : undefined,
          limit ? gt(events.seq, limit.storedAfter) : undefined,
          alertedThrough ? gt(messages.sentAt, alertedThrough) : undefined,
        ),
      )
      .orderBy(desc(messages.sentAt), desc(messages.createdSeq))
      .limit(1);
    return {
      call,
      message: message ? { ...message, body: message.body ?? "" } : null,
      lastSeq: account?.lastSeq ?? 0,
      accountJid: account?.jid ?? "",
    };
  }

  /** Nothing stored up to `seq` needs an alert any more. */
  private async markAlerted(device: PushDevice, seq: number, at?: Date): Promise<void> {
    await markAlerted(this.o.store.db, device.id, seq, at);
    this.alertedThrough.delete(device.id);
  }

  private async position(account: number, seq: number): Promise<string> {
    const meta = await loadStoreMeta(this.o.store);
    return encodePosition(meta.epoch, meta.positionKey, { account, seq, base: seq });
  }

  private async sendCall(
    device: PushDevice,
    call: CallRow,
    work: Work,
    limit: Limit | null,
  ): Promise<PublishAnswer> {
    const db = this.o.store.db;
    // Claimed before sending: another publish (or instance) that lost the claim does not ring.
    const claimed = await db
      .insert(pushDeliveries)
      .values({ deviceId: device.id, callId: call.callId, accountId: device.accountId })
      .onConflictDoNothing()
      .returning({ callId: pushDeliveries.callId });
    if (claimed.length === 0) return OK;
    // Not delivered: the next publish for this device may ring it.
    const release = () =>
      db
        .delete(pushDeliveries)
        .where(and(eq(pushDeliveries.deviceId, device.id), eq(pushDeliveries.callId, call.callId)));
    let result: SendResult;
    try {
      result = await this.ring(device, call, work);
    } catch (err) {
      // A payload that cannot be built, a provider token that cannot be signed.
      await release();
      throw err;
    }
    if (result.ok) {
      this.o.logger.info({ deviceId: device.id, callId: call.callId }, "VoIP push sent");
      this.outcome(device, "voip", "sent");
      // A watch's look may stand for several publishes: what else is due (a message, another
      // call) is looked for at once rather than left to a publish that may not come. A
      // publish's own look stands for one.
      if (limit) this.followUp(device.id, this.clock(), limit);
      return OK;
    }
    const answer = await this.failed(device, "voip", result, limit);
    // Kept only for a device now disabled; any other may be rung by the next try: the next
    // publish, or the provider's retry (a watch's looks only take what was stored since).
    if (answer !== GONE) await release();
    return answer;
  }

  /** Sends the VoIP push (APNs) or high-priority call message (FCM) for a claimed call. */
  private async ring(device: PushDevice, call: CallRow, work: Work): Promise<SendResult> {
    const now = this.clock();
    const notice: CallNotice = {
      callId: call.callId,
      caller: call.peerJid,
      media: call.media,
      proposedAt: call.proposedAt,
      expiresAt: call.expiresAt,
      serverTime: new Date(now),
      position: await this.position(device.accountId, work.lastSeq),
    };
    const expiresMs = call.expiresAt?.getTime() ?? now + 30_000;
    const send = (): Promise<SendResult> => {
      if (device.platform === "apns") {
        const apns = this.o.senders.apns;
        if (!apns || !device.voipToken) return Promise.resolve(notConfigured);
        return apns.send({
          environment: device.environment,
          token: device.voipToken,
          topic: `${device.appId}.voip`,
          pushType: "voip",
          priority: 10,
          expiration: Math.ceil(expiresMs / 1000),
          payload: apnsVoipPayload(notice),
        });
      }
      const fcm = this.o.senders.fcm;
      if (!fcm) return Promise.resolve(notConfigured);
      return fcm.send({
        token: device.token,
        data: fcmCallData(notice),
        ttlSeconds: Math.max(0, Math.floor((expiresMs - now) / 1000)),
        collapseKey: call.callId,
      });
    };
    return sendWithRetries(send);
  }

  private async sendAlert(
    device: PushDevice,
    message: NonNullable<Work["message"]>,
    work: Work,
    limit: Limit | null,
  ): Promise<PublishAnswer> {
    const notice: MessageNotice = {
      account: work.accountJid,
      peer: message.peer,
      sender: message.peer,
      messageId: message.messageId,
      preview: message.body,
      sentAt: message.sentAt,
      unreadCount: message.unreadCount,
      position: await this.position(device.accountId, work.lastSeq),
    };
    const key = { p256dh: device.p256dh, auth: device.auth };
    const send = (): Promise<SendResult> => {
      if (device.platform === "apns") {
        const apns = this.o.senders.apns;
        if (!apns) return Promise.resolve(notConfigured);
        return apns.send({
          environment: device.environment,
          token: device.token,
          topic: device.appId,
          pushType: "alert",
          priority: 10,
          payload: apnsAlertPayload(notice, key, threadId(device, message.peer)),
        });
      }
      const fcm = this.o.senders.fcm;
      if (!fcm) return Promise.resolve(notConfigured);
      return fcm.send({ token: device.token, data: fcmAlertData(notice, key) });
    };
    const result = await sendWithRetries(send);
    if (result.ok || result.kind !== "unavailable") this.unavailableAlerts.delete(device.id);
    if (result.ok) {
      const now = this.clock();
      this.lastAlertAt.set(device.id, now);
      // The alert stands for everything stored, but for a look limited by send time: messages
      // sent later may be stored already, and their own publishes must still find them.
      if (limit) {
        const through = this.alertedThrough.get(device.id);
        if (!through || through < message.sentAt)
          this.alertedThrough.set(device.id, message.sentAt);
        await markAlerted(this.o.store.db, device.id, 0, new Date(now));
      } else {
        await this.markAlerted(device, work.lastSeq, new Date(now));
      }
      this.o.logger.info({ deviceId: device.id, seq: message.seq }, "alert push sent");
      this.outcome(device, "alert", "sent");
      return OK;
    }
    return this.failed(device, "alert", result, limit);
  }

  private async failed(
    device: PushDevice,
    kind: PushKind,
    result: SendFailure,
    limit: Limit | null,
  ): Promise<PublishAnswer> {
    const log = this.o.logger.child({ deviceId: device.id, platform: device.platform, kind });
    const now = this.clock();
    if (
      (result.kind === "unregistered" || result.kind === "bad_token") &&
      kind === "voip" &&
      device.platform === "apns" &&
      device.voipToken
    ) {
      // Only the PushKit token is dead: the device keeps its alerts, and is rung no more, as one
      // registered without a VoIP token, until it registers a new one.
      const dropped = await dropVoipToken(
        this.o.store.db,
        device.id,
        device.voipToken,
        result.kind === "unregistered" ? result.at : null,
      );
      this.outcome(device, kind, result.kind);
      if (dropped) log.warn({ reason: result.reason }, "provider refused the VoIP token; dropped");
      else
        log.info({ reason: result.reason }, "VoIP token refused before the device re-registered");
      return OK;
    }
    switch (result.kind) {
      case "unregistered": {
        const disabled = await disableDevice(
          this.o.store.db,
          device.id,
          "unregistered",
          new Date(now),
          result.at,
        );
        this.outcome(device, kind, "unregistered");
        if (!disabled) {
          log.info(
            { at: result.at },
            "token reported unregistered before the device re-registered",
          );
          return OK;
        }
        log.info({ reason: result.reason }, "device unregistered by the provider; disabled");
        return GONE;
      }
      case "bad_token":
        await disableDevice(this.o.store.db, device.id, result.reason, new Date(now));
        log.warn({ reason: result.reason }, "provider refused the device token; disabled");
        this.outcome(device, kind, "bad_token");
        return GONE;
      case "throttled": {
        // Success for ejabberd: a throttled device must keep its registration. A Retry-After
        // of 0 (or a date gone by) would otherwise send again at once, and again.
        const retryAfterMs = Math.min(
          MAX_THROTTLE_MS,
          Math.max(MIN_THROTTLE_MS, result.retryAfterMs),
        );
        this.backoffUntil.set(backoffKey(device.id, kind), now + retryAfterMs);
        this.followUp(device.id, now + retryAfterMs, limit);
        log.warn({ retryAfterMs }, "provider throttles this device");
        this.outcome(device, kind, "throttled");
        return OK;
      }
      case "unavailable":
        log.warn({ reason: result.reason }, "provider unavailable after retries");
        this.outcome(device, kind, "failed");
        // Tried again while it still rings (its claim was released); an expired call is no
        // work any more, so this ends by itself. An alert is tried again, less and less often,
        // until it is sent or nothing is due any more (read, taken back, device gone).
        this.followUp(device.id, now + this.retryDelay(device, kind), limit);
        return {
          ok: false,
          type: "wait",
          condition: "remote-server-timeout",
          text: "the push provider is unavailable",
        };
      case "rejected":
        if (result.reason === NOT_CONFIGURED) {
          log.warn("no credentials for this platform; push not sent");
          this.outcome(device, kind, "not_configured");
        } else {
          log.error({ reason: result.reason }, "provider rejected the push request");
          this.outcome(device, kind, "failed");
        }
        return {
          ok: false,
          type: "wait",
          condition: "internal-server-error",
          text: "the push could not be sent",
        };
    }
  }

  /** How long after a push that found the provider unavailable to try the device again. */
  private retryDelay(device: PushDevice, kind: PushKind): number {
    if (kind === "voip") return this.o.callRetryMs ?? 5000;
    const failures = (this.unavailableAlerts.get(device.id) ?? 0) + 1;
    this.unavailableAlerts.set(device.id, failures);
    const first = this.o.alertRetryMs ?? 5000;
    return Math.min(MAX_ALERT_RETRY_MS, first * 2 ** Math.min(failures - 1, 20));
  }

  private outcome(device: PushDevice, kind: PushKind, outcome: PushOutcome): void {
    this.o.onOutcome?.(device.platform, kind, outcome);
  }
}

/**
 * The back-off of a throttled device, whatever the provider's Retry-After says: at least a
 * second, and at most an hour (a timer cannot wait past 24.8 days: it would fire at once).
 */
const MIN_THROTTLE_MS = 1000;
const MAX_THROTTLE_MS = 3_600_000;

/** The longest wait between two tries of an alert the provider was unavailable for. */
const MAX_ALERT_RETRY_MS = 5 * 60_000;

/** How long a device is watched for ingest to reach its publish. */
const INGEST_WAIT_MS = 10 * 60_000;
/** How often a watched device asks whether ingest has reached its publish (one shared read). */
const INGEST_POLL_MS = 1000;
/**
 * How far ejabberd's clock (archive ids, send times) may be off this one (a publish's arrival):
 * ingest has reached a publish once its checkpoint is this far past it, and a watched device is
 * pushed what was sent up to this far past its publish.
 */
const CLOCK_SKEW_MS = 500;

/**
 * What a watch's look may push: only what was stored after `storedAfter` (an account seq) and
 * sent by `sentUpTo`. A publish's own look has no limit.
 */
interface Limit {
  sentUpTo: Date;
  storedAfter: number;
}

/** Of two limits, the one that allows more: no limit over any. */
function widest(a: Limit | null, b: Limit | null): Limit | null {
  if (!a || !b) return null;
  return {
    sentUpTo: new Date(Math.max(a.sentUpTo.getTime(), b.sentUpTo.getTime())),
    storedAfter: Math.min(a.storedAfter, b.storedAfter),
  };
}

const NOT_CONFIGURED = "not_configured";
const notConfigured: SendResult = { ok: false, kind: "rejected", reason: NOT_CONFIGURED };

function backoffKey(deviceId: string, kind: PushKind): string {
  return `${kind} ${deviceId}`;
}

/** PushKit needs its own token; FCM rings through the one token. */
function canRing(device: PushDevice): boolean {
  return device.platform === "fcm" || device.voipToken !== null;
}

/** Groups a peer's alerts on the lock screen without telling Apple who the peer is. */
function threadId(device: PushDevice, peer: string): string {
  return createHash("sha256").update(`${device.id}\n${peer}`).digest("base64url").slice(0, 22);
}
