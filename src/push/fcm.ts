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
    // FCM's own word on the token only: a bare 404 (a wrong FCM_BASE_URL or project, a proxy's
    // page) says nothing about the device, and falls through to rejected below.
    if (error.errorCode === "UNREGISTERED") {
      return { ok: false, kind: "unregistered", reason: error.errorCode, at: null };
    }
    if (error.errorCode === "SENDER_ID_MISMATCH" || isInvalidToken(error))
      return { ok: false, kind: "bad_token", reason: error.code ?? `HTTP ${res.status}` };
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

interface FcmError {
  /** FCM's own reason (a FcmError detail's `errorCode`), else the gRPC `status` */
  code: string | null;
  errorCode: string | null;
  status: string | null;
  message: string;
  /** the request fields a BadRequest detail says are wrong */
  fields: string[];
}

/**
 * FCM v1 puts the gRPC status in `status`, its own reason in a FcmError detail's `errorCode`,
 * and the fields it found wrong in a BadRequest detail's `fieldViolations`.
 */
async function fcmError(res: Response): Promise<FcmError> {
  try {
    const body = (await res.json()) as {
      error?: {
        status?: string;
        message?: string;
        details?: { errorCode?: string; fieldViolations?: { field?: string }[] }[];
      };
    };
    const details = Array.isArray(body.error?.details) ? body.error.details : [];
    const errorCode = details.find((d) => d.errorCode)?.errorCode ?? null;
    const status = body.error?.status ?? null;
    return {
      code: errorCode ?? status,
      errorCode,
      status,
      message: String(body.error?.message ?? ""),
      fields: details
        .flatMap((d) => (Array.isArray(d.fieldViolations) ? d.fieldViolations : []))
        .map((v) => v.field ?? ""),
    };
  } catch {
    return { code: null, errorCode: null, status: null, message: "", fields: [] };
  }
}

/**
 * FCM's 400 for a registration token that is none (malformed, truncated), told apart from the
 * INVALID_ARGUMENT of a payload it refuses, which must not disable the device: a field violation
 * on the token, or, as FCM's error docs show it, no field named and its message saying so.
 * Anything else stays rejected.
 */
function isInvalidToken(error: FcmError): boolean {
  if (error.status !== "INVALID_ARGUMENT") return false;
  if (error.fields.length > 0) return error.fields.includes("message.token");
  return error.errorCode === "INVALID_ARGUMENT" && /registration token/i.test(error.message);
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
