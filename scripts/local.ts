/**
 * `npm run local`: a local ejabberd (with the syncside module) plus syncside on the embedded
 * database, for trying syncside on one machine. Ctrl-C stops both.
 *
 * Environment: XMPP_DOMAIN (localhost), EJABBERD_C2S_PORT (5222), EJABBERD_HTTP_PORT (5280),
 * EJABBERD_COMPONENT_PORT (5347), EJABBERD_DIST_PORT (4371), PORT (8080), DATA_DIR (./data),
 * ADMIN_USER (admin). Anything else syncside reads (LOG_LEVEL, …) is passed through.
 *
 * It refuses to start beside a running instance of itself (same ejabberd, same port), and stops
 * only the ejabberd it started.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const env = process.env;
const domain = env.XMPP_DOMAIN ?? "localhost";
const c2sPort = env.EJABBERD_C2S_PORT ?? "5222";
const httpPort = env.EJABBERD_HTTP_PORT ?? "5280";
const componentPort = env.EJABBERD_COMPONENT_PORT ?? "5347";
const port = env.PORT ?? "8080";
const host = env.HOST ?? "127.0.0.1";
const observerPassword = env.OBSERVER_PASSWORD ?? "observer-dev-password";
const pushSecret = env.PUSH_COMPONENT_SECRET ?? "push-dev-secret";
const adminJid = `${env.ADMIN_USER ?? "admin"}@${domain}`;
const ejabberdEnv = {
  ...env,
  XMPP_DOMAIN: domain,
  EJABBERD_C2S_PORT: c2sPort,
  EJABBERD_HTTP_PORT: httpPort,
  EJABBERD_COMPONENT_PORT: componentPort,
  OBSERVER_PASSWORD: observerPassword,
  PUSH_COMPONENT_SECRET: pushSecret,
};
/**
 * Whether this run started ejabberd: only then does it stop it. A start that failed is left
 * alone: it may have lost to another run's, whose node the shared home's config now names.
 */
let startedEjabberd = false;

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

/** Whether something already listens on host:port. */
function portTaken(listenHost: string, listenPort: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once("error", () => resolve(true));
    probe.listen(listenPort, listenHost, () => probe.close(() => resolve(false)));
  });
}

async function ejabberdRunning(): Promise<boolean> {
  return ejabberd("status").then(
    () => true,
    () => false,
  );
}

async function stopEjabberd() {
  if (startedEjabberd) await ejabberd("stop").catch((err) => say(`ejabberd stop failed: ${err}`));
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
  if (await portTaken(host, Number(port))) {
    throw new Error(
      `something already listens on ${host}:${port} (another npm run local?): stop it, or set PORT`,
    );
  }
  say("• installing ejabberd if needed …");
  await ejabberd("install");
  if (await ejabberdRunning()) {
    throw new Error(
      `an ejabberd for this setup already runs (another npm run local?): stop that one first, or stop it with \`bash scripts/ejabberd.sh stop\` and the same EJABBERD_* variables, or choose other EJABBERD_* ports`,
    );
  }
  say(`• starting ejabberd for ${domain} on 127.0.0.1:${c2sPort} …`);
  await ejabberd("start");
  startedEjabberd = true;

  // A fresh admin password every run: it is printed below, never stored.
  const adminPassword = randomBytes(9).toString("base64url");
  const [user] = adminJid.split("@");
  await api("register", { user, host: domain, password: adminPassword }).catch(() => {});
  await api("change_password", { user, host: domain, newpass: adminPassword });

  const database = env.DATABASE_URL
    ? "the database at DATABASE_URL"
    : `embedded database in ${env.DATA_DIR ?? "./data"}`;
  say(`• starting syncside on ${host}:${port} (${database}) …`);
  const sidecar = spawn(process.execPath, ["--import", "tsx", join(root, "src", "main.ts")], {
    cwd: root,
    stdio: ["ignore", "inherit", "inherit"],
    env: {
      ...env,
      XMPP_SERVICE: `xmpp://127.0.0.1:${c2sPort}`,
      XMPP_DOMAIN: domain,
      OBSERVER_PASSWORD: observerPassword,
      ADMIN_JIDS: env.ADMIN_JIDS ?? adminJid,
      PUSH_COMPONENT_SECRET: pushSecret,
      PUSH_COMPONENT_SERVICE: `xmpp://127.0.0.1:${componentPort}`,
      HOST: host,
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
    await stopEjabberd();
    say("• stopped");
    process.exit(code);
  };
  // Closing the terminal (SIGHUP) stops both too, rather than leave ejabberd behind.
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(signal, () => void stop(0));
  }
  sidecar.on("exit", (code) => void stop(code ?? 1));

  const base = `http://127.0.0.1:${port}`;
  await waitReady(`http://127.0.0.1:${port}/readyz`, sidecar, 120_000);
  const login = JSON.stringify({ jid: adminJid, password: adminPassword, label: "curl" });
  say(`
syncside is ready at ${base} (API docs: ${base}/docs)
ejabberd: xmpp://127.0.0.1:${c2sPort}, domain ${domain}, plain TCP (no TLS) on loopback: an XMPP
client on this machine that allows an unencrypted connection can register an account and chat.
Push: the app server runs, without APNs or FCM credentials (set APNS_* / FCM_* to send).

admin account:  ${adminJid}
password:       ${adminPassword}

try:
  TOKEN=$(curl -s -X POST ${base}/v1/tokens -H 'content-type: application/json' -d '${login}' | sed -E 's/.*"token":"([^"]+)".*/\\1/')
  curl -s ${base}/v1/sync -H "authorization: Bearer $TOKEN"

Ctrl-C stops both.`);
}

main().catch(async (err) => {
  process.stderr.write(`local: ${err instanceof Error ? err.message : String(err)}\n`);
  await stopEjabberd();
  process.exit(1);
});
