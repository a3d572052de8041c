/** The part of @xmpp/component (0.13, untyped) that the push app server uses. */
declare module "@xmpp/component" {
  import type { EventEmitter } from "node:events";
  import type { Element } from "@xmpp/xml";

  export function xml(
    name: string,
    attrs?: Record<string, string> | null,
    ...children: (Element | string)[]
  ): Element;

  export interface IqContext {
    stanza: Element;
    /** the IQ's single child */
    element: Element;
    from: string;
    to: string;
    id: string;
    type: string;
  }

  export interface Component extends EventEmitter {
    status: string;
    start(): Promise<unknown>;
    stop(): Promise<unknown>;
    reconnect: EventEmitter & { stop(): void };
    iqCallee: {
      /** Returning an `<error/>` answers with it; anything else truthy answers `result`. */
      set(
        ns: string,
        name: string,
        handler: (ctx: IqContext) => Promise<Element | boolean> | Element | boolean,
      ): void;
    };
  }

  export function component(options: {
    service: string;
    domain: string;
    password: string;
  }): Component;
}
