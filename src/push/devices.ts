import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { and, desc, eq, isNull, lt, ne, sql } from "drizzle-orm";
import type { Db } from "../store/db.js";
import { accounts } from "../store/schema/accounts.js";
import { pushDeliveries } from "../store/schema/push-deliveries.js";
import {
  type PushEnvironment,
  type PushPlatform,
  pushDevices,
} from "../store/schema/push-devices.js";

export type PushDevice = typeof pushDevices.$inferSelect;

/** Only this digest of a device's XEP-0357 secret is stored. */
export function hashSecret(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

export function secretMatches(device: PushDevice, secret: string): boolean {
  const given = Buffer.from(hashSecret(secret), "hex");
  const stored = Buffer.from(device.secretHash, "hex");
  return given.length === stored.length && timingSafeEqual(given, stored);
}

export interface DeviceRegistration {
  accountId: number;
  platform: PushPlatform;
  token: string;
  voipToken: string | null;
  appId: string;
  environment: PushEnvironment;
  p256dh: string;
  auth: string;
  now: Date;
}

/**
 * Registers a device, or re-registers it (same account, platform and token): same id and node,
 * new secret and keys, enabled again. A token now registered by another account stops receiving
 * that account's pushes: a phone belongs to whoever registered it last.
 */
export async function registerDevice(
  db: Db,
  r: DeviceRegistration,
): Promise<{ device: PushDevice; secret: string }> {
  const secret = randomBytes(32).toString("base64url");
  const fields = {
    voipToken: r.voipToken,
    appId: r.appId,
    environment: r.environment,
    p256dh: r.p256dh,
    auth: r.auth,
    secretHash: hashSecret(secret),
    registeredAt: r.now,
    disabledAt: null,
    disabledReason: null,
  };
  return db.transaction(async (tx) => {
    const [device] = await tx
      .insert(pushDevices)
      .values({
        id: `dev_${randomBytes(9).toString("base64url")}`,
        accountId: r.accountId,
        alertedSeq: lastSeqOf(r.accountId),
        platform: r.platform,
        token: r.token,
        node: randomBytes(18).toString("base64url"),
        createdAt: r.now,
        ...fields,
      })
      .onConflictDoUpdate({
        target: [pushDevices.accountId, pushDevices.platform, pushDevices.token],
        set: {
          ...fields,
          alertedSeq: sql`greatest(${pushDevices.alertedSeq}, ${lastSeqOf(r.accountId)})`,
        },
      })
      .returning();
    if (!device) throw new Error("push device upsert returned no row");
    await tx
      .update(pushDevices)
      .set({ disabledAt: r.now, disabledReason: "registered_by_another_account" })
      .where(
        and(
          eq(pushDevices.platform, r.platform),
          eq(pushDevices.token, r.token),
          ne(pushDevices.accountId, r.accountId),
          isNull(pushDevices.disabledAt),
        ),
      );
    return { device, secret };
  });
}

/**
 * Where a device registered now starts being alerted: after the account's last event, not at
 * its whole past (the app that registers is open; it shows what came before).
 */
function lastSeqOf(accountId: number) {
  return sql`(select ${accounts.lastSeq} from ${accounts} where ${accounts.id} = ${accountId})`;
}

export function listDevices(db: Db, accountId: number): Promise<PushDevice[]> {
  return db
    .select()
    .from(pushDevices)
    .where(eq(pushDevices.accountId, accountId))
    .orderBy(desc(pushDevices.createdAt), desc(pushDevices.id));
}

/**
 * Deletes one of the account's devices, and its record of the calls it was rung for; false when
 * the account has no such device.
 */
export async function deleteDevice(db: Db, accountId: number, id: string): Promise<boolean> {
  return db.transaction(async (tx) => {
    const deleted = await tx
      .delete(pushDevices)
      .where(and(eq(pushDevices.accountId, accountId), eq(pushDevices.id, id)))
      .returning({ id: pushDevices.id });
    if (deleted.length === 0) return false;
    await tx.delete(pushDeliveries).where(eq(pushDeliveries.deviceId, id));
    return true;
  });
}

export async function findDevice(
  db: Db,
  by: { node: string } | { id: string },
): Promise<PushDevice | null> {
  const [row] = await db
    .select()
    .from(pushDevices)
    .where("node" in by ? eq(pushDevices.node, by.node) : eq(pushDevices.id, by.id));
  return row ?? null;
}

/**
 * Stops pushing to a device. With `unlessRegisteredAfter` (an APNs 410's timestamp), a device
 * that registered again since then is kept: its token was confirmed after Apple's verdict.
 */
export async function disableDevice(
  db: Db,
  id: string,
  reason: string,
  now: Date,
  unlessRegisteredAfter?: Date | null,
): Promise<boolean> {
  const updated = await db
    .update(pushDevices)
    .set({ disabledAt: now, disabledReason: reason })
    .where(
      and(
        eq(pushDevices.id, id),
        unlessRegisteredAfter ? lt(pushDevices.registeredAt, unlessRegisteredAfter) : undefined,
      ),
    )
    .returning({ id: pushDevices.id });
  return updated.length > 0;
}

/**
 * Forgets a device's PushKit token that APNs refused, keeping the device and its alerts. As with
 * disableDevice, a device registered again since `unlessRegisteredAfter` keeps it; so does one
 * that registered another token meanwhile.
 */
export async function dropVoipToken(
  db: Db,
  id: string,
  voipToken: string,
  unlessRegisteredAfter?: Date | null,
): Promise<boolean> {
  const updated = await db
    .update(pushDevices)
    .set({ voipToken: null })
    .where(
      and(
        eq(pushDevices.id, id),
        eq(pushDevices.voipToken, voipToken),
        unlessRegisteredAfter ? lt(pushDevices.registeredAt, unlessRegisteredAfter) : undefined,
      ),
    )
    .returning({ id: pushDevices.id });
  return updated.length > 0;
}

/**
 * Records that the account's events up to `seq` need no alert any more: an alert covered them
 * (`at`, when it was sent), or none of them was an unread message to alert.
 */
export async function markAlerted(db: Db, id: string, seq: number, at?: Date): Promise<void> {
  await db
    .update(pushDevices)
    .set({
      alertedSeq: sql`greatest(${pushDevices.alertedSeq}, ${seq})`,
      ...(at ? { lastPushAt: at } : {}),
    })
    .where(eq(pushDevices.id, id));
}
