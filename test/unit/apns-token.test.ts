import { generateKeyPairSync } from "node:crypto";
import { decodeProtectedHeader, jwtVerify } from "jose";
import { describe, expect, it } from "vitest";
import { APNS_TOKEN_REFRESH_MS, ApnsTokenSigner } from "../../src/push/apns-token.js";

const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();

describe("APNs provider token", () => {
  it("is an ES256 JWT with kid, iss = team id and iat, verifiable with the key's public half", async () => {
    const now = Date.UTC(2026, 0, 1, 12);
    const signer = new ApnsTokenSigner(pem, "KEY123", "TEAM456", () => now);
    const jwt = await signer.token();
    expect(decodeProtectedHeader(jwt)).toEqual({ alg: "ES256", kid: "KEY123" });
    const { payload } = await jwtVerify(jwt, publicKey, {
      issuer: "TEAM456",
      currentDate: new Date(now),
    });
    expect(payload).toEqual({ iss: "TEAM456", iat: now / 1000 });
  });

  it("is reused until it is 40 minutes old, then replaced", async () => {
    let now = Date.UTC(2026, 0, 1, 12);
    const signer = new ApnsTokenSigner(pem, "K", "T", () => now);
    const first = await signer.token();
    now += APNS_TOKEN_REFRESH_MS - 1;
    expect(await signer.token()).toBe(first);
    now += 1;
    const second = await signer.token();
    expect(second).not.toBe(first);
    now += 60_000;
    expect(await signer.token()).toBe(second);
  });

  it("signs once for concurrent requests, and again after invalidate()", async () => {
    const signer = new ApnsTokenSigner(pem, "K", "T");
    const tokens = await Promise.all(Array.from({ length: 20 }, () => signer.token()));
    expect(new Set(tokens).size).toBe(1);
    signer.invalidate();
    // ES256 signatures are randomized: a new signature differs even within the same second.
    expect(await signer.token()).not.toBe(tokens[0]);
  });
});
