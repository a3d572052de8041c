import { createPrivateKey, type KeyObject } from "node:crypto";
import { SignJWT } from "jose";
import { z } from "zod";
import { retryAfterMs, type SendResult } from "./provider.js";

const FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging";
const DEFAULT_TOKEN_URL = "https://oauth2.googleapis.com/token";
/** An access token is replaced this long before Google says it expires. */
const EXPIRY_MARGIN_MS = 5 * 60_000;
const DEFAULT_THROTTLE_MS = 60_000;

export const ServiceAccount = z.object({
  project_id: z.string().min(1),
  client_email: z.string().min(1),
  private_key: z.string().min(1),
  private_key_id: z.string().optional(),
  token_uri: z.string().optional(),
});
export type ServiceAccount = z.infer<typeof ServiceAccount>;

export interface FcmOptions {
  serviceAccount: ServiceAccount;
  /** overrides the service account's token_uri */
  tokenUrl?: string;
  baseUrl: string;
  timeoutMs?: number;
  clock?: () => number;
}

export interface FcmMessage {
  token: string;
  data: Record<string, string>;
  /** seconds the message may wait for an offline device */
  ttlSeconds?: number;
  collapseKey?: string;
}

/**
 * FCM HTTP v1: a service-account JWT (RS256) is exchanged for an OAuth access token, cached until
 * shortly before it expires, and used for every messages:send.
 */
export class FcmClient {
  private readonly key: KeyObject;
  private access: { token: string; expiresAt: number } | null = null;
  private fetching: Promise<string> | null = null;
  private readonly clock: () => number;

  constructor(private readonly options: FcmOptions) {
    this.key = createPrivateKey(options.serviceAccount.private_key);
    this.clock = options.clock ?? Date.now;
  }

  async send(message: FcmMessage): Promise<SendResult> {
    let token: string;
    try {
      token = await this.accessToken();
    } catch (err) {
      return { ok: false, kind: "unavailable", reason: describe(err), retryAfterMs: null };
    }
    const base = this.options.baseUrl.replace(/\/+$/, "");
    const android: Record<string, unknown> = { priority: "HIGH" };
    if (message.ttlSeconds !== undefined) android.ttl = `${Math.max(0, message.ttlSeconds)}s`;
    if (message.collapseKey) android.collapse_key = message.collapseKey;
    let res: Response;
    try {
      res = await fetch(
        `${base}/v1/projects/${encodeURIComponent(this.options.serviceAccount.project_id)}/messages:send`,
        {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: JSON.stringify({ message: { token: message.token, data: message.data, android } }),
          signal: AbortSignal.timeout(this.options.timeoutMs ?? 5000),
        },
      );
    } catch (err) {
      return { ok: false, kind: "unavailable", reason: describe(err), retryAfterMs: null };
    }
    if (res.ok) {
      await res.body?.cancel();
      return { ok: true };
    }
    const error = await fcmError(res);
    const retryAfter = retryAfterMs(res.headers.get("retry-after"));
    if (res.status === 404 || error.code === "UNREGISTERED") {
      return { ok: false, kind: "unregistered", reason: error.code ?? "NOT_FOUND", at: null };
    }
    if (error.code === "SENDER_ID_MISMATCH")
      return { ok: false, kind: "bad_token", reason: error.code };
    if (res.status === 429 || error.code === "QUOTA_EXCEEDED") {
      return {
        ok: false,
        kind: "throttled",
        reason: error.code ?? "HTTP 429",
        retryAfterMs: retryAfter ?? DEFAULT_THROTTLE_MS,
      };
    }
    if (res.status === 401) {
      // The cached token was revoked or rotated: fetch a new one on the retry.
      this.access = null;
      return { ok: false, kind: "unavailable", reason: "UNAUTHENTICATED", retryAfterMs: null };
    }
    if (res.status >= 500) {
      return {
        ok: false,
        kind: "unavailable",
        reason: error.code ?? `HTTP ${res.status}`,
        retryAfterMs: retryAfter,
      };
    }
    return { ok: false, kind: "rejected", reason: error.code ?? `HTTP ${res.status}` };
  }

  /** The cached access token, or a new one when it is near expiry; one exchange at a time. */
  accessToken(): Promise<string> {
    if (this.access && this.clock() < this.access.expiresAt - EXPIRY_MARGIN_MS) {
      return Promise.resolve(this.access.token);
    }
    this.fetching ??= this.exchange().finally(() => {
      this.fetching = null;
    });
    return this.fetching;
  }

  private async exchange(): Promise<string> {
    const account = this.options.serviceAccount;
    const tokenUrl = this.options.tokenUrl ?? account.token_uri ?? DEFAULT_TOKEN_URL;
    const now = Math.floor(this.clock() / 1000);
    const assertion = await new SignJWT({ scope: FCM_SCOPE })
      .setProtectedHeader({
        alg: "RS256",
        typ: "JWT",
        ...(account.private_key_id ? { kid: account.private_key_id } : {}),
      })
      .setIssuer(account.client_email)
      .setAudience(tokenUrl)
      .setIssuedAt(now)
      .setExpirationTime(now + 3600)
      .sign(this.key);
    const res = await fetch(tokenUrl, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer",
        assertion,
      }),
      signal: AbortSignal.timeout(this.options.timeoutMs ?? 5000),
    });
    if (!res.ok) throw new Error(`token endpoint answered ${res.status}`);
    const body = (await res.json()) as { access_token?: string; expires_in?: number };
    if (!body.access_token) throw new Error("token endpoint answered without access_token");
    this.access = {
      token: body.access_token,
      expiresAt: this.clock() + (body.expires_in ?? 3600) * 1000,
    };
    return body.access_token;
  }
}

/** FCM v1 puts the precise reason in `details[].errorCode`, the gRPC status in `status`. */
async function fcmError(res: Response): Promise<{ code: string | null }> {
  try {
    const body = (await res.json()) as {
      error?: { status?: string; details?: { errorCode?: string }[] };
    };
    const detail = body.error?.details?.find((d) => d.errorCode)?.errorCode;
    return { code: detail ?? body.error?.status ?? null };
  } catch {
    return { code: null };
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
