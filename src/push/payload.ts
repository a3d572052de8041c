import { type DeviceKey, ENCRYPTION_OVERHEAD, encryptForDevice } from "./encrypt.js";

/** Provider limits on the whole payload, in bytes. */
export const LIMITS = { apnsAlert: 4096, apnsVoip: 5120, fcmData: 4096 } as const;

/** What an alert push tells the app's extension; it travels encrypted to the device's key. */
export interface MessageNotice {
  account: string;
  peer: string;
  sender: string;
  messageId: string | null;
  preview: string;
  sentAt: Date;
  /** unread messages in this conversation */
  unreadCount: number;
  /** the account's sync position including this message */
  position: string;
}

/** What a VoIP push carries: enough to ring CallKit before the app has synced. */
export interface CallNotice {
  callId: string;
  caller: string;
  media: string[];
  proposedAt: Date | null;
  expiresAt: Date | null;
  serverTime: Date;
  position: string;
}

/** The visible text of an alert: neutral, since Apple and the lock screen see it unencrypted. */
export const ALERT_TITLE = "New message";
export const ALERT_BODY = "Open to read";

const ELLIPSIS = "…";

/**
 * The longest prefix of `text` (whole code points, "…" appended when cut) for which `fits` holds.
 * Binary search: a payload's size grows monotonically with the preview's length.
 */
export function fitText(
  text: string,
  fits: (candidate: string, truncated: boolean) => boolean,
): { text: string; truncated: boolean } {
  if (fits(text, false)) return { text, truncated: false };
  const points = Array.from(text);
  let lo = 0;
  let hi = points.length - 1;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (fits(points.slice(0, mid).join("") + ELLIPSIS, true)) lo = mid;
    else hi = mid - 1;
  }
  const cut = points.slice(0, lo).join("");
  return { text: lo === 0 ? "" : cut + ELLIPSIS, truncated: true };
}

function messagePlaintext(notice: MessageNotice, preview: string, truncated: boolean): string {
  return JSON.stringify({
    v: 1,
    type: "message",
    account: notice.account,
    peer: notice.peer,
    sender: notice.sender,
    message_id: notice.messageId,
    preview,
    preview_truncated: truncated,
    sent_at: notice.sentAt.toISOString(),
    unread_count: notice.unreadCount,
    position: notice.position,
  });
}

/** base64url length of an aes128gcm body for a plaintext of this many bytes (no padding). */
function encryptedLength(plainBytes: number): number {
  return Math.ceil(((plainBytes + ENCRYPTION_OVERHEAD) * 4) / 3);
}

/**
 * Encrypts the notice with the longest preview for which `wrap(ciphertext)` stays within `limit`.
 * Sizes are computed from the plaintext length (aes128gcm adds a fixed overhead), so only the
 * final text is encrypted.
 */
function sealWithin(
  notice: MessageNotice,
  key: DeviceKey,
  limit: number,
  wrap: (encrypted: string) => string,
): string {
  const size = (plaintext: string) =>
    Buffer.byteLength(wrap("x".repeat(encryptedLength(Buffer.byteLength(plaintext)))));
  const fitted = fitText(
    notice.preview,
    (preview, truncated) => size(messagePlaintext(notice, preview, truncated)) <= limit,
  );
  const plaintext = messagePlaintext(notice, fitted.text, fitted.truncated);
  return wrap(encryptForDevice(plaintext, key).toString("base64url"));
}

/** The APNs body of an alert: visible neutral text, the encrypted notice for the extension. */
export function apnsAlertPayload(notice: MessageNotice, key: DeviceKey, threadId: string): string {
  return sealWithin(notice, key, LIMITS.apnsAlert, (encrypted) =>
    JSON.stringify({
      aps: {
        alert: { title: ALERT_TITLE, body: ALERT_BODY },
        sound: "default",
        "mutable-content": 1,
        "thread-id": threadId,
      },
      encrypted,
    }),
  );
}

/** The FCM data of an alert: data-only, so the app itself decides what to show. */
export function fcmAlertData(notice: MessageNotice, key: DeviceKey): Record<string, string> {
  const json = sealWithin(notice, key, LIMITS.fcmData, (encrypted) =>
    JSON.stringify({ type: "message", encrypted }),
  );
  return JSON.parse(json) as Record<string, string>;
}

function callFields(call: CallNotice) {
  return {
    type: "call",
    call_id: call.callId,
    caller: call.caller,
    media: call.media,
    proposed_at: call.proposedAt?.toISOString() ?? null,
    expires_at: call.expiresAt?.toISOString() ?? null,
    server_time: call.serverTime.toISOString(),
    position: call.position,
  };
}

/** The APNs VoIP body: PushKit hands it to the app, which must report the call to CallKit. */
export function apnsVoipPayload(call: CallNotice): string {
  const payload = JSON.stringify({ aps: {}, call: callFields(call) });
  if (Buffer.byteLength(payload) > LIMITS.apnsVoip) throw new Error("VoIP payload too large");
  return payload;
}

/** FCM data values must be strings: media is comma-separated, absent times are empty. */
export function fcmCallData(call: CallNotice): Record<string, string> {
  const fields = callFields(call);
  const data = {
    ...fields,
    media: call.media.join(","),
    proposed_at: fields.proposed_at ?? "",
    expires_at: fields.expires_at ?? "",
  };
  if (Buffer.byteLength(JSON.stringify(data)) > LIMITS.fcmData) {
    throw new Error("FCM call data too large");
  }
  return data;
}
