import http2 from "node:http2";
import type { PushEnvironment } from "../store/schema/push-devices.js";
import type { ApnsTokenSigner } from "./apns-token.js";
import { retryAfterMs, type SendResult } from "./provider.js";

export interface ApnsNotification {
  environment: PushEnvironment;
  /** the device token (hex), alert or PushKit */
  token: string;
  topic: string;
  pushType: "alert" | "voip";
  priority: 5 | 10;
  /** unix seconds after which Apple drops the push instead of delivering it late */
  expiration?: number;
  collapseId?: string;
  payload: string;
}

export interface ApnsOptions {
  signer: ApnsTokenSigner;
  productionUrl: string;
  sandboxUrl: string;
  /** an extra trusted CA (PEM): only for a stand-in of APNs in tests */
  ca?: string;
  timeoutMs?: number;
}

/** 400 reasons that mean the token itself is wrong for this app: the device is disabled. */
const BAD_TOKEN_REASONS = new Set(["BadDeviceToken", "DeviceTokenNotForTopic"]);
/** APNs sends no Retry-After with 429; Apple's guidance is to back off for a while. */
const DEFAULT_THROTTLE_MS = 30_000;

/**
 * APNs over HTTP/2 with token auth: one long-lived connection per environment, reopened when
 * Apple closes it (GOAWAY, idle), it fails, or a request on it gets no answer in time.
 */
export class ApnsClient {
  private readonly sessions = new Map<string, http2.ClientHttp2Session>();

  constructor(private readonly options: ApnsOptions) {}

  async send(n: ApnsNotification): Promise<SendResult> {
    const jwt = await this.options.signer.token();
    const headers: http2.OutgoingHttpHeaders = {
      ":method": "POST",
      ":path": `/3/device/${encodeURIComponent(n.token)}`,
      authorization: `bearer ${jwt}`,
      "apns-topic": n.topic,
      "apns-push-type": n.pushType,
      "apns-priority": String(n.priority),
      "content-type": "application/json",
    };
    if (n.expiration !== undefined) headers["apns-expiration"] = String(n.expiration);
    if (n.collapseId) headers["apns-collapse-id"] = n.collapseId;

    let answer: { status: number; headers: http2.IncomingHttpHeaders; body: string };
    try {
      answer = await this.request(n.environment, headers, n.payload);
    } catch (err) {
      return { ok: false, kind: "unavailable", reason: describe(err), retryAfterMs: null };
    }
    return toResult(answer.status, answer.headers, answer.body, () =>
      this.options.signer.invalidate(),
    );
  }

  close(): void {
    for (const session of this.sessions.values()) session.close();
    this.sessions.clear();
  }

  private session(environment: PushEnvironment): http2.ClientHttp2Session {
    const url = environment === "production" ? this.options.productionUrl : this.options.sandboxUrl;
    const existing = this.sessions.get(url);
    if (existing && !existing.closed && !existing.destroyed) return existing;
    const session = http2.connect(url, this.options.ca ? { ca: this.options.ca } : {});
    const forget = () => {
      if (this.sessions.get(url) === session) this.sessions.delete(url);
    };
    // A failed connection fails its pending requests; the next send opens a new one.
    session.on("error", forget);
    session.on("goaway", forget);
    session.on("close", forget);
    // Idle pushes must not keep the process alive at shutdown.
    session.unref();
    this.sessions.set(url, session);
    return session;
  }

  private request(
    environment: PushEnvironment,
    headers: http2.OutgoingHttpHeaders,
    body: string,
  ): Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: string }> {
    return new Promise((resolve, reject) => {
      const session = this.session(environment);
      const stream = session.request(headers);
      const chunks: Buffer[] = [];
      let responseHeaders: http2.IncomingHttpHeaders = {};
      stream.setTimeout(this.options.timeoutMs ?? 5000, () => {
        reject(new Error("APNs request timed out"));
        // A flow dropped without FIN or RST (NAT, firewall) looks like this too, and every later
        // request on the session would wait as long: the next try connects afresh.
        session.destroy(new Error("APNs connection stopped answering"));
      });
      stream.on("response", (h) => {
        responseHeaders = h;
      });
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("end", () =>
        resolve({
          status: Number(responseHeaders[":status"] ?? 0),
          headers: responseHeaders,
          body: Buffer.concat(chunks).toString("utf8"),
        }),
      );
      stream.on("error", reject);
      stream.end(body);
    });
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function toResult(
  status: number,
  headers: http2.IncomingHttpHeaders,
  body: string,
  invalidateToken: () => void,
): SendResult {
  if (status === 200) return { ok: true };
  let parsed: { reason?: string; timestamp?: number } = {};
  try {
    parsed = JSON.parse(body) as typeof parsed;
  } catch {
    // A proxy's HTML error page: the status alone decides.
  }
  const reason = parsed.reason ?? `HTTP ${status}`;
  const retryAfter = retryAfterMs(headers["retry-after"] as string | undefined);
  if (status === 410) {
    const at = typeof parsed.timestamp === "number" ? new Date(parsed.timestamp) : null;
    return { ok: false, kind: "unregistered", reason, at };
  }
  if (status === 400 && BAD_TOKEN_REASONS.has(reason))
    return { ok: false, kind: "bad_token", reason };
  if (status === 429) {
    return {
      ok: false,
      kind: "throttled",
      reason,
      retryAfterMs: retryAfter ?? DEFAULT_THROTTLE_MS,
    };
  }
  if (status === 403 && (reason === "ExpiredProviderToken" || reason === "InvalidProviderToken")) {
    // A fresh token on the retry; Apple may have rejected ours as stale.
    invalidateToken();
    return { ok: false, kind: "unavailable", reason, retryAfterMs: null };
  }
  if (status >= 500 || status === 0) {
    return { ok: false, kind: "unavailable", reason, retryAfterMs: retryAfter };
  }
  return { ok: false, kind: "rejected", reason };
}
