import { randomBytes } from "node:crypto";
import { client } from "@xmpp/client";
import { AppError } from "../errors.js";
import type { Logger } from "../logger.js";
import { sendSaslAsUtf8 } from "./sasl-utf8.js";

export interface PasswordCheck {
  /** ejabberd's client listener, e.g. xmpp://127.0.0.1:5222 */
  service: string;
  domain: string;
  username: string;
  password: string;
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;

/** SASL conditions that say "the server cannot judge now", not "these credentials are wrong". */
const TRANSIENT_SASL = new Set(["temporary-auth-failure", "aborted"]);

/**
 * Verifies a password the only way ejabberd allows for any auth backend: a real SASL login as
 * that account. True when the session comes online, false when SASL refuses the credentials;
 * an unreachable or silent server is a 503, never a wrong password.
 */
export async function verifyPassword(check: PasswordCheck, logger: Logger): Promise<boolean> {
  const xmpp = client({
    service: check.service,
    domain: check.domain,
    username: check.username,
    password: check.password,
    // A fresh resource never replaces one of the user's real sessions.
    resource: `syncside-login-${randomBytes(6).toString("hex")}`,
  });
  sendSaslAsUtf8(xmpp);
  // start() rejects with the same error; without a listener an emitted error would crash.
  xmpp.on("error", () => {});
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error("login timed out")),
      check.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    );
  });
  try {
    await Promise.race([xmpp.start(), timeout]);
    return true;
  } catch (err) {
    const condition = (err as { name?: string; condition?: string }).condition;
    if ((err as Error).name === "SASLError" && condition && !TRANSIENT_SASL.has(condition)) {
      return false;
    }
    logger.warn({ err, service: check.service }, "password check could not reach ejabberd");
    throw new AppError("service_unavailable", "the XMPP server cannot be reached; try again later");
  } finally {
    clearTimeout(timer);
    // Without stop() the reconnect module would keep dialling ejabberd after a failure.
    await xmpp.stop().catch(() => {});
  }
}
