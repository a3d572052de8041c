import { xml } from "@xmpp/client";
import { describe, expect, inject, it } from "vitest";
import { connectUser, createUser } from "../helpers/ejabberd.js";

describe("the test ejabberd", () => {
  const ejabberd = inject("ejabberd");

  it("registers a fresh account and lets it log in and exchange a message", async () => {
    const alice = await createUser(ejabberd, "alice");
    const bob = await createUser(ejabberd, "bob");
    const a = await connectUser(ejabberd, alice);
    const b = await connectUser(ejabberd, bob);
    try {
      const received = new Promise<string>((resolve) => {
        b.on("stanza", (s) => {
          if (s.is("message") && s.getChildText("body")) resolve(s.getChildText("body") ?? "");
        });
      });
      await a.send(
        xml("message", { to: bob.jid, type: "chat", id: "e1" }, xml("body", {}, "ping")),
      );
      expect(await received).toBe("ping");
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  it("refuses a wrong password", async () => {
    const alice = await createUser(ejabberd, "alice");
    await expect(connectUser(ejabberd, { ...alice, password: "wrong" })).rejects.toThrow(
      /not-authorized/,
    );
  });
});
