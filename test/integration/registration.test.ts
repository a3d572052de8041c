import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import { describe, expect, inject, it } from "vitest";
import { connectUser } from "../helpers/ejabberd.js";

const ejabberd = inject("ejabberd");

/** Reads from the socket until `pattern` shows up in what the server sent so far. */
function until(socket: Socket, pattern: RegExp, received: { text: string }): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${pattern} in: ${received.text}`)), 10_000);
    const check = () => {
      if (pattern.test(received.text)) {
        clearTimeout(timer);
        socket.off("data", check);
        resolve(received.text);
      }
    };
    socket.on("data", check);
    check();
  });
}

/** Registers an account the way an XMPP client does (XEP-0077), on an unauthenticated stream. */
async function registerOverXmpp(username: string, password: string): Promise<void> {
  const socket = connect(ejabberd.c2sPort, "127.0.0.1");
  const received = { text: "" };
  socket.on("data", (chunk) => {
    received.text += chunk.toString("utf8");
  });
  try {
    socket.write(
      `<?xml version='1.0'?><stream:stream to='${ejabberd.domain}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`,
    );
    const features = await until(socket, /<\/stream:features>/, received);
    expect(features).toContain("http://jabber.org/features/iq-register");
    socket.write(
      `<iq type='set' id='reg1'><query xmlns='jabber:iq:register'><username>${username}</username><password>${password}</password></query></iq>`,
    );
    const answer = await until(socket, /id=['"]reg1['"]/, received);
    const reply = answer.slice(answer.lastIndexOf("<iq"));
    expect(reply).toMatch(/type=['"]result['"]/);
  } finally {
    socket.end("</stream:stream>");
    socket.destroy();
  }
}

describe("in-band registration on the project's ejabberd", () => {
  it("lets clients register accounts over XMPP one after another, then log in", async () => {
    // Two in a row from one address: ejabberd's default would refuse the second for 10 minutes.
    for (const n of [1, 2]) {
      const username = `ibr${n}-${randomBytes(4).toString("hex")}`;
      const password = randomBytes(8).toString("hex");
      await registerOverXmpp(username, password);
      const client = await connectUser(ejabberd, {
        jid: `${username}@${ejabberd.domain}`,
        username,
        password,
      });
      expect(client.jid?.bare().toString()).toBe(`${username}@${ejabberd.domain}`);
      await client.stop();
    }
  });
});
