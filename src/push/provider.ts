import { setTimeout as sleep } from "node:timers/promises";

/** How a push provider (APNs, FCM) answered one request, in the terms the dispatcher acts on. */
export type SendResult =
  | { ok: true }
  /** the token is gone (app uninstalled); `at` is when the provider learned it, if it says */
  | { ok: false; kind: "unregistered"; reason: string; at: Date | null }
  /** the token can never work for this app (wrong topic, malformed, other sender) */
  | { ok: false; kind: "bad_token"; reason: string }
  /** slow down: nothing is sent to this device until the back-off passes */
  | { ok: false; kind: "throttled"; reason: string; retryAfterMs: number }
  /** the provider or the network failed; worth retrying */
  | { ok: false; kind: "unavailable"; reason: string; retryAfterMs: number | null }
  /** the provider refused the request itself (a bug on our side); retrying will not help */
  | { ok: false; kind: "rejected"; reason: string };

export type SendFailure = Extract<SendResult, { ok: false }>;

/** Retry-After in seconds (or an HTTP date) → milliseconds, or null when absent or garbled. */
export function retryAfterMs(header: string | null | undefined, now = Date.now()): number | null {
  if (!header) return null;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

export interface RetryPolicy {
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

/** Bounded, so an answer still reaches ejabberd before its IQ times out. */
export const DEFAULT_RETRY: RetryPolicy = { attempts: 3, baseDelayMs: 200, maxDelayMs: 1000 };

/** Retries only `unavailable` answers (5xx, network), with exponential back-off. */
export async function sendWithRetries(
  send: () => Promise<SendResult>,
  policy: RetryPolicy = DEFAULT_RETRY,
): Promise<SendResult> {
  let result = await send();
  for (let attempt = 1; attempt < policy.attempts; attempt++) {
    if (result.ok || result.kind !== "unavailable") return result;
    const backoff = policy.baseDelayMs * 2 ** (attempt - 1);
    await sleep(Math.min(policy.maxDelayMs, Math.max(backoff, result.retryAfterMs ?? 0)));
    result = await send();
  }
  return result;
}
