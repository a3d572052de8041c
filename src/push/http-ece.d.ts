/** The part of http_ece (RFC 8188 / RFC 8291 content encoding) that syncside and its tests use. */
declare module "http_ece" {
  import type { ECDH } from "node:crypto";

  interface EceParams {
    version?: "aes128gcm" | "aesgcm" | "aesgcm128";
    /** the receiver's public key (encrypt) — Buffer or base64url */
    dh?: Buffer | string;
    /** the local ECDH key pair: the sender's when encrypting, the receiver's when decrypting */
    privateKey?: ECDH;
    authSecret?: Buffer | string;
    salt?: Buffer | string;
    rs?: number;
  }

  export function encrypt(content: Buffer, params: EceParams): Buffer;
  export function decrypt(content: Buffer, params: EceParams): Buffer;
}
