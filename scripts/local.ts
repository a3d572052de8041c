/**
 * `npm run local`: a local ejabberd (with the syncside module) plus syncside on the embedded
 * database, for trying syncside on one machine. Ctrl-C stops both.
 *
 * Environment: XMPP_DOMAIN (localhost), EJABBERD_C2S_PORT (5222), EJABBERD_HTTP_PORT (5280),
 * EJABBERD_COMPONENT_PORT (5347), EJABBERD_DIST_PORT (4371), PORT (8080), DATA_DIR (./data),
 * ADMIN_USER (admin). Anything else syncside reads (LOG_LEVEL, …) is passed through.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const env = process.env;
const domain = env.XMPP_DOMAIN ?? "localhost";
const c2sPort = env.EJABBERD_C2S_PORT ?? "5222";
const httpPort = env.EJABBERD_HTTP_PORT ?? "5280";
const port = env.PORT ?? "8080";
const observerPassword = env.OBSERVER_PASSWORD ?? "observer-dev-password";
const adminJid = `${env.ADMIN_USER ?? "admin"}@${domain}`;
const ejabberdEnv = {
  ...env,
  XMPP_DOMAIN: domain,
  EJABBERD_C2S_PORT: c2sPort,
  EJABBERD_HTTP_PORT: httpPort,
  OBSERVER_PASSWORD: observerPassword,
};

function say(line: string) {
  process.stdout.write(`${line}\n`);
}

async function ejabberd(...args: string[]) {
  const { stdout } = await run("bash", [join(root, "scripts", "ejabberd.sh"), ...args], {
    env: ejabberdEnv,
    maxBuffer: 16 * 1024 * 1024,
  });
  return stdout;
}

async function api(command: string, args: Record<string, unknown>) {
  const res = await fetch(`http://127.0.0.1:${httpPort}/api/${command}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(args),
  });
  if (!res.ok) throw new Error(`ejabberd ${command}: ${res.status} ${await res.text()}`);
}

async function waitReady(url: string, child: ChildProcess, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`syncside exited with code ${child.exitCode}`);
    const ok = await fetch(url)
      .then((r) => r.ok)
      .catch(() => false);
    if (ok) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`syncside was not ready at ${url} within ${timeoutMs / 1000} s`);
}

async function main() {
  say("• installing ejabberd if needed …");
  await ejabberd("install");
  say(`• starting ejabberd for ${domain} on 127.0.0.1:${c2sPort} …`);
  await ejabberd("start");

  // A fresh admin password every run: it is printed below, never stored.
  const adminPassword = randomBytes(9).toString("base64url");
  const [user] = adminJid.split("@");
  await api("register", { user, host: domain, password: adminPassword }).catch(() => {});
  await api("change_password", { user, host: domain, newpass: adminPassword });

  say(
    `• starting syncside on 127.0.0.1:${port} (embedded database in ${env.DATA_DIR ?? "./data"}) …`,
  );
  const sidecar = spawn(process.execPath, ["--import", "tsx", join(root, "src", "main.ts")], {
    cwd: root,
    stdio: ["ignore", "inherit", "inherit"],
    env: {
      ...env,
      XMPP_SERVICE: `xmpp://127.0.0.1:${c2sPort}`,
      XMPP_DOMAIN: domain,
      OBSERVER_PASSWORD: observerPassword,
      ADMIN_JIDS: env.ADMIN_JIDS ?? adminJid,
      HOST: env.HOST ?? "127.0.0.1",
      PORT: port,
    },
  });

  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say("\n• stopping syncside and ejabberd …");
    if (sidecar.exitCode === null) {
      sidecar.kill("SIGTERM");
      await new Promise((r) => sidecar.once("exit", r));
    }
    await ejabberd("stop").catch((err) => say(`ejabberd stop failed: ${err}`));
    process.exit(code);
  };
  process.on("SIGINT", () => void stop(0));
  process.on("SIGTERM", () => void stop(0));
  sidecar.on("exit", (code) => void stop(code ?? 1));

  const base = `http://127.0.0.1:${port}`;
  await waitReady(`${base}/readyz`, sidecar, 120_000);
  const login = JSON.stringify({ jid: adminJid, password: adminPassword, label: "curl" });
  say(`
syncside is ready at ${base} (API docs: ${base}/docs)
ejabberd: xmpp://127.0.0.1:${c2sPort}, domain ${domain}; any XMPP client can register an account.

admin account:  ${adminJid}
password:       ${adminPassword}

try:
  TOKEN=$(curl -s -X POST ${base}/v1/tokens -H 'content-type: application/json' -d '${login}' | sed -E 's/.*"token":"([^"]+)".*/\\1/')
  curl -s ${base}/v1/sync -H "authorization: Bearer $TOKEN"

Ctrl-C stops both.`);
}

main().catch(async (err) => {
  process.stderr.write(`local: ${err instanceof Error ? err.message : String(err)}\n`);
  await ejabberd("stop").catch(() => {});
  process.exit(1);
});
