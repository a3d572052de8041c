import { createECDH, randomBytes } from "node:crypto";
import { encrypt } from "http_ece";

export interface DeviceKey {
  /** base64url uncompressed P-256 point (65 bytes) */
  p256dh: string;
  /** base64url 16-byte auth secret */
  auth: string;
}

/**
 * RFC 8291 (Web Push message encryption, `aes128gcm` of RFC 8188): a fresh sender key pair and
 * salt per message, so only the device holding the private half of `p256dh` can read it. The
 * result is the complete RFC 8188 body: salt, record size, the sender's public key, ciphertext.
 */
export function encryptForDevice(plaintext: string, key: DeviceKey): Buffer {
  const sender = createECDH("prime256v1");
  sender.generateKeys();
  return encrypt(Buffer.from(plaintext, "utf8"), {
    version: "aes128gcm",
    dh: key.p256dh,
    privateKey: sender,
    authSecret: key.auth,
    salt: randomBytes(16),
  });
}

/** Bytes an aes128gcm body adds to its plaintext: header (16 + 4 + 1 + 65), delimiter, tag. */
export const ENCRYPTION_OVERHEAD = 86 + 1 + 16;
