/** A conversation of a sync answer, as far as the phone below reads it. */
interface SyncedConversation {
  peer: string;
  version: number;
  messages: { id: string; direction: string }[];
  messages_truncated: boolean;
}

interface SyncBody {
  position: string;
  conversations: SyncedConversation[];
}

interface MessagePage {
  messages: { id: string; direction: string }[];
  next_cursor: string | null;
}

/**
 * A phone in the foreground: one long-poll of GET /v1/sync after another over loopback HTTP,
 * noting when each incoming message id first shows. When a conversation's delta was cut to
 * `messages`, it pages the rest through the conversation's message list, as the app does.
 */
export class Phone {
  /** message id → performance.now() when it first showed */
  readonly seen = new Map<string, number>();
  private running = false;
  private loop: Promise<void> | null = null;
  private readonly versions = new Map<string, number>();

  constructor(
    private readonly base: string,
    private readonly token: string,
  ) {}

  private async get<T>(path: string): Promise<T> {
    const res = await fetch(`${this.base}${path}`, {
      headers: { authorization: `Bearer ${this.token}` },
    });
    if (!res.ok) throw new Error(`${path} answered ${res.status}: ${await res.text()}`);
    return (await res.json()) as T;
  }

  /** Takes a position (a first sync) and starts polling from it. */
  async start(): Promise<void> {
    let position = (await this.get<SyncBody>("/v1/sync")).position;
    this.running = true;
    this.loop = (async () => {
      while (this.running) {
        const body = await this.get<SyncBody>(
          `/v1/sync?since=${encodeURIComponent(position)}&wait=20&messages=200`,
        );
        const now = performance.now();
        for (const c of body.conversations) {
          this.note(c.messages, now);
          if (c.messages_truncated) await this.pageRest(c);
          this.versions.set(c.peer, c.version);
        }
        position = body.position;
      }
    })();
  }

  private note(messages: { id: string; direction: string }[], now: number): void {
    for (const m of messages) {
      if (m.direction === "in" && !this.seen.has(m.id)) this.seen.set(m.id, now);
    }
  }

  private async pageRest(c: SyncedConversation): Promise<void> {
    const path = `/v1/conversations/${encodeURIComponent(c.peer)}/messages`;
    let query = `changed_since=${this.versions.get(c.peer) ?? 0}&limit=200`;
    for (;;) {
      const page = await this.get<MessagePage>(`${path}?${query}`);
      this.note(page.messages, performance.now());
      if (!page.next_cursor) return;
      query = `cursor=${encodeURIComponent(page.next_cursor)}&limit=200`;
    }
  }

  /**
   * Stops after the poll in flight, which ends at its next change or its wait: `nudge` makes
   * that change.
   */
  async stop(nudge: () => Promise<void>): Promise<void> {
    this.running = false;
    await nudge();
    await this.loop;
  }
}
