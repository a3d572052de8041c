import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { type Config, ConfigError } from "../config.js";
import { plainly } from "../validation.js";
import { ServiceAccount } from "./fcm.js";

/**
 * A credential given either inline (a PEM block or a JSON object, as secret stores inject them)
 * or as a path to the file that holds it.
 */
export async function readCredential(value: string): Promise<string> {
  const trimmed = value.trim();
  if (trimmed.startsWith("-----BEGIN") || trimmed.startsWith("{")) return trimmed;
  return (await readFile(trimmed, "utf8")).trim();
}

export interface PushCredentials {
  apns: { key: string; keyId: string; teamId: string; ca: string | null } | null;
  fcm: ServiceAccount | null;
}

/**
 * Reads and checks the configured push credentials, so that one that cannot be used stops
 * start-up like any bad setting, rather than every push to its platform failing later. Throws a
 * ConfigError naming each bad setting, and never quoting one: it may be the secret itself.
 */
export async function loadPushCredentials(push: Config["push"]): Promise<PushCredentials> {
  const issues: string[] = [];
  const read = async (name: string, value: string | undefined, inline: string) => {
    if (value === undefined) return null;
    return readCredential(value).catch((err: NodeJS.ErrnoException) => {
      issues.push(
        `${name}: neither ${inline} nor a file that can be read (${err.code ?? err.name})`,
      );
      return null;
    });
  };
  const { apns, fcm } = push;

  const key = await read("APNS_KEY", apns.key, "an inline PEM");
  const keyIssue = key === null ? null : signingKeyIssue(key, "ec");
  if (keyIssue) issues.push(`APNS_KEY: ${keyIssue}`);
  const ca = await read("APNS_CA", apns.ca, "an inline PEM");
  if (ca !== null && !isCertificate(ca)) issues.push("APNS_CA: not a PEM certificate");

  const json = await read("FCM_SERVICE_ACCOUNT", fcm.serviceAccount, "inline JSON");
  const account =
    json === null
      ? null
      : serviceAccount(json, (issue) => issues.push(`FCM_SERVICE_ACCOUNT: ${issue}`));

  if (issues.length > 0) throw new ConfigError(issues);
  // loadConfig refuses a partial APNs setting: a key without its ids is not configured at all.
  return {
    apns:
      key !== null && apns.keyId && apns.teamId
        ? { key, keyId: apns.keyId, teamId: apns.teamId, ca }
        : null,
    fcm: account,
  };
}

/** Why a PEM is not a private key for the provider's signatures (ES256, RS256); null if it is. */
function signingKeyIssue(pem: string, type: "ec" | "rsa"): string | null {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    return "not a PEM private key (unencrypted)";
  }
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (type === "ec" && (key.asymmetricKeyType !== "ec" || curve !== "prime256v1")) {
    return `expected an EC P-256 key (Apple's .p8), got ${key.asymmetricKeyType}${curve ? ` ${curve}` : ""}`;
  }
  if (type === "rsa" && key.asymmetricKeyType !== "rsa") {
    return `expected an RSA key, got ${key.asymmetricKeyType}`;
  }
  return null;
}

function isCertificate(pem: string): boolean {
  try {
    new X509Certificate(pem);
    return true;
  } catch {
    return false;
  }
}

function serviceAccount(json: string, issue: (text: string) => void): ServiceAccount | null {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    // Not JSON.parse's message: it quotes the text around the error.
    issue("not valid JSON");
    return null;
  }
  const parsed = ServiceAccount.safeParse(value);
  if (!parsed.success) {
    for (const i of parsed.error.issues)
      issue(`${i.path.join(".") || "the account"}: ${plainly(i)}`);
    return null;
  }
  const keyIssue = signingKeyIssue(parsed.data.private_key, "rsa");
  if (keyIssue) {
    issue(`private_key: ${keyIssue}`);
    return null;
  }
  return parsed.data;
}
