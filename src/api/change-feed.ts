import type { Logger } from "../logger.js";
import type { Store } from "../store/db.js";
import { CHANGES_CHANNEL } from "../store/events.js";

/** One account's interest in changes, taken before the read it guards. */
export interface ChangeSubscription {
  /**
   * Resolves true at the first change for the account since subscribing (or since the previous
   * wait returned true), false at the deadline or when the signal aborts.
   */
  wait(ms: number, signal: AbortSignal): Promise<boolean>;
  close(): void;
}

interface Waiter {
  accountId: number;
  changed: boolean;
  wake: (() => void) | null;
}

/**
 * Fans PostgreSQL NOTIFYs on the changes channel out to long-polls, by account id. One LISTEN per
 * process whatever the number of waiting clients; started at first use and kept for the life of
 * the store, so every later long-poll subscribes without a round trip.
 */
export class ChangeFeed {
  private readonly waiters = new Map<number, Set<Waiter>>();
  private started: Promise<unknown> | null = null;

  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
  ) {}

  async subscribe(accountId: number): Promise<ChangeSubscription> {
    await this.start();
    const waiter: Waiter = { accountId, changed: false, wake: null };
    const set = this.waiters.get(accountId) ?? new Set();
    set.add(waiter);
    this.waiters.set(accountId, set);
    return {
      wait: (ms, signal) => this.wait(waiter, ms, signal),
      close: () => {
        set.delete(waiter);
        if (set.size === 0 && this.waiters.get(accountId) === set) this.waiters.delete(accountId);
        waiter.wake?.();
      },
    };
  }

  private start(): Promise<unknown> {
    if (!this.started) {
      this.started = this.store.listen(CHANGES_CHANNEL, (payload) => this.deliver(payload));
      // A failed LISTEN (database down) is retried by the next long-poll, not remembered.
      this.started.catch((err) => {
        this.logger.warn({ err }, "listening for changes failed");
        this.started = null;
      });
    }
    return this.started;
  }

  private deliver(payload: string): void {
    for (const id of payload.split(",")) {
      for (const waiter of this.waiters.get(Number(id)) ?? []) {
        waiter.changed = true;
        waiter.wake?.();
      }
    }
  }

  private wait(waiter: Waiter, ms: number, signal: AbortSignal): Promise<boolean> {
    if (waiter.changed || signal.aborted || ms <= 0) return Promise.resolve(this.take(waiter));
    return new Promise<boolean>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        waiter.wake = null;
        resolve(this.take(waiter));
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
      waiter.wake = done;
    });
  }

  private take(waiter: Waiter): boolean {
    const changed = waiter.changed;
    waiter.changed = false;
    return changed;
  }
}

const feeds = new WeakMap<Store, ChangeFeed>();

/** The process's one feed for this store. */
export function changeFeedFor(store: Store, logger: Logger): ChangeFeed {
  let feed = feeds.get(store);
  if (!feed) {
    feed = new ChangeFeed(store, logger);
    feeds.set(store, feed);
  }
  return feed;
}
