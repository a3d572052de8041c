import { type Component, component, xml } from "@xmpp/component";
import type { Element } from "@xmpp/xml";
import type { Logger } from "../logger.js";
import { retryForever, sleep } from "../retry.js";
import type { PublishAnswer, PushDispatcher } from "./dispatcher.js";

export const NS_PUBSUB = "http://jabber.org/protocol/pubsub";
const NS_DATA = "jabber:x:data";
const NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";
const PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options";

/** The node and secret of an XEP-0357 publish, or null when the payload is not one. */
export function parsePublish(pubsub: Element): { node: string; secret: string | null } | null {
  const publish = pubsub.getChild("publish");
  const node = publish?.attrs.node;
  if (!publish || typeof node !== "string" || node === "") return null;
  if (!publish.getChild("item")?.getChild("notification", "urn:xmpp:push:0")) return null;
  const form = pubsub.getChild("publish-options")?.getChild("x", NS_DATA);
  const fields = form?.getChildren("field") ?? [];
  const value = (name: string) =>
    fields.find((f) => f.attrs.var === name)?.getChildText("value") ?? null;
  const formType = value("FORM_TYPE");
  return { node, secret: formType === PUBLISH_OPTIONS ? value("secret") : null };
}

/**
 * Answers one publish IQ. Only the XMPP server itself publishes (mod_push sends from the bare
 * domain); a user's own client must not trigger pushes even with a stolen secret.
 */
export async function handlePublishIq(
  iq: Element,
  options: { dispatcher: PushDispatcher; serverDomains: ReadonlySet<string> },
): Promise<PublishAnswer> {
  const from = String(iq.attrs.from ?? "");
  if (!options.serverDomains.has(from)) {
    return { ok: false, type: "auth", condition: "forbidden", text: "only the server publishes" };
  }
  const pubsub = iq.getChild("pubsub", NS_PUBSUB);
  const publish = pubsub ? parsePublish(pubsub) : null;
  if (!publish) {
    return { ok: false, type: "modify", condition: "bad-request", text: "not an XEP-0357 publish" };
  }
  return options.dispatcher.publish(publish.node, publish.secret);
}

function toReply(answer: PublishAnswer): Element | boolean {
  if (answer.ok) return true;
  return xml(
    "error",
    { type: answer.type },
    xml(answer.condition, { xmlns: NS_STANZAS }),
    xml("text", { xmlns: NS_STANZAS }, answer.text),
  );
}

export interface AppServerOptions {
  service: string;
  domain: string;
  secret: string;
  serverDomains: ReadonlySet<string>;
  dispatcher: PushDispatcher;
  logger: Logger;
  onOnline?: () => void;
}

/**
 * The XEP-0357 app server as an XEP-0114 component of ejabberd. @xmpp/reconnect brings it back
 * after a lost connection; the first connection is retried until it succeeds or stop().
 */
export class AppServer {
  private xmpp: Component | null = null;
  private readonly stopping = new AbortController();
  online = false;

  constructor(private readonly o: AppServerOptions) {}

  async start(): Promise<void> {
    const xmpp = component({
      service: this.o.service,
      domain: this.o.domain,
      password: this.o.secret,
    });
    this.xmpp = xmpp;
    xmpp.on("error", (err: Error) =>
      this.o.logger.warn({ err: err.message }, "push component connection error"),
    );
    xmpp.on("online", () => {
      this.online = true;
      this.o.logger.info({ domain: this.o.domain }, "push component online");
      this.o.onOnline?.();
    });
    xmpp.on("disconnect", () => {
      this.online = false;
    });
    xmpp.iqCallee.set(NS_PUBSUB, "pubsub", async (ctx) => {
      const answer = await handlePublishIq(ctx.stanza, this.o).catch((err) => {
        this.o.logger.error({ err }, "publish failed");
        return {
          ok: false,
          type: "wait",
          condition: "internal-server-error",
          text: "try again later",
        } as const;
      });
      return toReply(answer);
    });
    await retryForever(() => xmpp.start(), {
      signal: this.stopping.signal,
      onError: (err, delayMs) =>
        this.o.logger.warn(
          { err: String(err), retryInMs: delayMs },
          "push component could not connect, retrying",
        ),
    });
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    const xmpp = this.xmpp;
    this.xmpp = null;
    this.online = false;
    if (!xmpp) return;
    xmpp.reconnect.stop();
    await Promise.race([xmpp.stop().catch(() => {}), sleep(3000)]);
  }
}
