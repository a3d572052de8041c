import { createPrivateKey, type KeyObject } from "node:crypto";
import { SignJWT } from "jose";

/** Apple refuses tokens older than an hour and throttles ones renewed more than every 20 min. */
export const APNS_TOKEN_REFRESH_MS = 40 * 60_000;

/**
 * The APNs provider token (ES256 JWT: `iss` = team id, `iat`, header `kid`), signed once and
 * reused by every request until it is APNS_TOKEN_REFRESH_MS old.
 */
export class ApnsTokenSigner {
  private readonly key: KeyObject;
  private current: { jwt: string; issuedAt: number } | null = null;
  private signing: Promise<string> | null = null;

  constructor(
    privateKeyPem: string,
    private readonly keyId: string,
    private readonly teamId: string,
    private readonly clock: () => number = Date.now,
  ) {
    this.key = createPrivateKey(privateKeyPem);
  }

  async token(): Promise<string> {
    const now = this.clock();
    if (this.current && now - this.current.issuedAt < APNS_TOKEN_REFRESH_MS) {
      return this.current.jwt;
    }
    // Concurrent requests at refresh time share one signature.
    this.signing ??= this.sign(now).finally(() => {
      this.signing = null;
    });
    return this.signing;
  }

  /** Forgets the current token, e.g. after APNs called it expired. */
  invalidate(): void {
    this.current = null;
  }

  private async sign(now: number): Promise<string> {
    const jwt = await new SignJWT({})
      .setProtectedHeader({ alg: "ES256", kid: this.keyId })
      .setIssuer(this.teamId)
      .setIssuedAt(Math.floor(now / 1000))
      .sign(this.key);
    this.current = { jwt, issuedAt: now };
    return jwt;
  }
}
