import { createECDH, randomBytes } from "node:crypto";
import { decrypt } from "http_ece";
import { describe, expect, it } from "vitest";
import {
  ALERT_BODY,
  ALERT_TITLE,
  apnsAlertPayload,
  apnsVoipPayload,
  fcmAlertData,
  fcmCallData,
  fitText,
  LIMITS,
  type MessageNotice,
} from "../../src/push/payload.js";

function deviceKeys() {
  const ecdh = createECDH("prime256v1");
  ecdh.generateKeys();
  const auth = randomBytes(16);
  return {
    ecdh,
    auth,
    key: { p256dh: ecdh.getPublicKey().toString("base64url"), auth: auth.toString("base64url") },
  };
}

function open(encrypted: string, device: ReturnType<typeof deviceKeys>) {
  const plain = decrypt(Buffer.from(encrypted, "base64url"), {
    version: "aes128gcm",
    privateKey: device.ecdh,
    authSecret: device.auth,
  });
  return JSON.parse(plain.toString("utf8")) as Record<string, unknown>;
}

const notice = (preview: string): MessageNotice => ({
  account: "alice@example.test",
  peer: "bob@example.test",
  sender: "bob@example.test",
  messageId: "m1",
  preview,
  sentAt: new Date("2026-01-02T03:04:05.000Z"),
  unreadCount: 3,
  position: "AQ1wb3NpdGlvbg",
});

describe("fitText", () => {
  it("keeps a text that fits", () => {
    expect(fitText("hello", () => true)).toEqual({ text: "hello", truncated: false });
  });

  it("cuts at the longest fitting prefix and marks the cut", () => {
    const fits = (s: string) => s.length <= 6;
    expect(fitText("hello world", fits)).toEqual({ text: "hello…", truncated: true });
  });

  it("never splits a code point", () => {
    const fits = (s: string) => Buffer.byteLength(s) <= 4 * 3 + 3;
    const { text } = fitText("😀😀😀😀😀😀", fits);
    expect(text).toBe("😀😀😀…");
  });

  it("gives an empty preview when nothing fits", () => {
    expect(fitText("hello", () => false)).toEqual({ text: "", truncated: true });
  });
});

describe("alert payloads", () => {
  it("carries the whole notice, encrypted so the device's key opens it", () => {
    const device = deviceKeys();
    const body = JSON.parse(apnsAlertPayload(notice("see you at 8"), device.key, "thread1"));
    expect(body.aps).toEqual({
      alert: { title: ALERT_TITLE, body: ALERT_BODY },
      sound: "default",
      "mutable-content": 1,
      "thread-id": "thread1",
    });
    expect(JSON.stringify(body)).not.toContain("see you");
    expect(open(body.encrypted, device)).toEqual({
      v: 1,
      type: "message",
      account: "alice@example.test",
      peer: "bob@example.test",
      sender: "bob@example.test",
      message_id: "m1",
      preview: "see you at 8",
      preview_truncated: false,
      sent_at: "2026-01-02T03:04:05.000Z",
      unread_count: 3,
      position: "AQ1wb3NpdGlvbg",
    });
  });

  it.each([
    ["ASCII", "a".repeat(20_000)],
    ["4-byte emoji", "😀".repeat(5_000)],
    ["characters JSON escapes", '"\\\n'.repeat(5_000)],
  ])("truncates a long %s preview to keep the APNs payload within 4 KB", (_, preview) => {
    const device = deviceKeys();
    const payload = apnsAlertPayload(notice(preview), device.key, "t");
    expect(Buffer.byteLength(payload)).toBeLessThanOrEqual(LIMITS.apnsAlert);
    // Close to the limit: the preview is not cut more than needed.
    expect(Buffer.byteLength(payload)).toBeGreaterThan(LIMITS.apnsAlert - 64);
    const opened = open(JSON.parse(payload).encrypted, device);
    expect(opened.preview_truncated).toBe(true);
    const text = opened.preview as string;
    expect(text.endsWith("…")).toBe(true);
    expect(preview.startsWith(text.slice(0, -1))).toBe(true);
  });

  it("keeps FCM data within 4 KB and data values as strings", () => {
    const device = deviceKeys();
    const data = fcmAlertData(notice("x".repeat(10_000)), device.key);
    expect(Object.keys(data)).toEqual(["type", "encrypted"]);
    expect(data.type).toBe("message");
    expect(Buffer.byteLength(JSON.stringify(data))).toBeLessThanOrEqual(LIMITS.fcmData);
    expect(open(data.encrypted as string, device).preview_truncated).toBe(true);
  });
});

describe("call payloads", () => {
  const call = {
    callId: "call-1",
    caller: "bob@example.test",
    media: ["audio", "video"],
    proposedAt: new Date("2026-01-02T03:04:05.000Z"),
    expiresAt: new Date("2026-01-02T03:05:05.000Z"),
    serverTime: new Date("2026-01-02T03:04:06.000Z"),
    position: "pos",
  };

  it("gives PushKit the call to report to CallKit", () => {
    expect(JSON.parse(apnsVoipPayload(call))).toEqual({
      aps: {},
      call: {
        type: "call",
        call_id: "call-1",
        caller: "bob@example.test",
        media: ["audio", "video"],
        proposed_at: "2026-01-02T03:04:05.000Z",
        expires_at: "2026-01-02T03:05:05.000Z",
        server_time: "2026-01-02T03:04:06.000Z",
        position: "pos",
      },
    });
  });

  it("gives FCM string values only", () => {
    const data = fcmCallData(call);
    expect(data.media).toBe("audio,video");
    for (const value of Object.values(data)) expect(typeof value).toBe("string");
  });
});
