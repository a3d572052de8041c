/**
 * SASL messages as UTF-8, whatever the username.
 *
 * @xmpp/sasl 0.14 base64-encodes every SASL message with `btoa()`, which takes one byte per
 * UTF-16 code unit: a username such as "josé" leaves as Latin-1 bytes, which ejabberd reads as
 * another name (a wrong password, it says), and one with a character above U+00FF ("用户")
 * makes `btoa()` throw before anything is sent. Upstream has fixed it (xmppjs/xmpp.js#1122) but
 * not released it. Until then each mechanism a client registers hands @xmpp/sasl its messages
 * as binary strings of their UTF-8 bytes, which `btoa()` encodes as they are, and reads the
 * server's (decoded by `atob()` to bytes) as UTF-8 text. SCRAM's signatures are taken over the
 * same UTF-8 bytes, so they match what the server received.
 *
 * The mechanism registry is private to the `saslmechanisms` package; the login tests with
 * non-ASCII usernames fail if a release moves it or starts encoding UTF-8 itself (the bytes
 * would then be encoded twice), and this module can go.
 */

interface Mechanism {
  response(credentials: unknown): unknown;
  challenge(challenge: string): unknown;
}

type MechanismClass = new () => Mechanism;

interface SaslFactory {
  _mechs?: { name: string; mech: MechanismClass }[];
}

/**
 * The client's SASL mechanisms, each wrapped to speak UTF-8 (see above). Not FAST's (XEP-0484
 * token logins, which ejabberd offers from 24.x on): its HT-SHA-256-NONE already hands over
 * binary strings, an HMAC after the username, which a second encoding would garble.
 */
export function sendSaslAsUtf8(xmpp: object): void {
  // Not in @xmpp/client's types: the client object carries its factory all the same.
  const factory = (xmpp as { saslFactory?: SaslFactory }).saslFactory;
  if (!factory || !Array.isArray(factory._mechs)) {
    throw new Error("@xmpp/client's SASL mechanism registry was not found");
  }
  factory._mechs = factory._mechs.map(({ name, mech }) => ({ name, mech: utf8(mech) }));
}

const toBinary = (text: string) => Buffer.from(text, "utf8").toString("latin1");
const fromBinary = (binary: string) => Buffer.from(binary, "latin1").toString("utf8");

function utf8(Inner: MechanismClass): MechanismClass {
  return class extends Inner {
    override response(credentials: unknown): Promise<unknown> {
      return Promise.resolve(super.response(credentials)).then((message) =>
        typeof message === "string" ? toBinary(message) : message,
      );
    }

    override challenge(challenge: string): unknown {
      return super.challenge(fromBinary(challenge));
    }
  };
}
