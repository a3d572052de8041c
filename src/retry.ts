export interface RetryOptions {
  signal: AbortSignal;
  initialDelayMs?: number;
  maxDelayMs?: number;
  onError?: (err: unknown, delayMs: number) => void;
}

/** Runs `task` until it succeeds or `signal` aborts, with capped exponential backoff and jitter. */
export async function retryForever<T>(task: () => Promise<T>, options: RetryOptions): Promise<T> {
  const { signal, initialDelayMs = 250, maxDelayMs = 10_000, onError } = options;
  let delay = initialDelayMs;
  for (;;) {
    signal.throwIfAborted();
    try {
      return await task();
    } catch (err) {
      if (signal.aborted) throw err;
      const wait = Math.round(delay * (0.5 + Math.random() / 2));
      onError?.(err, wait);
      await sleep(wait, signal);
      delay = Math.min(delay * 2, maxDelayMs);
    }
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
