import { execFile } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { createServer } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { type Client, client, xml } from "@xmpp/client";
import { declineStreamManagement, readStreamIntact } from "../../src/ingest/observer.js";

const run = promisify(execFile);

/** Where the test ejabberd listens; chosen away from a developer's local instance. */
export interface EjabberdInstance {
  home: string;
  domain: string;
  service: string;
  c2sPort: number;
  httpPort: number;
  componentPort: number;
  distPort: number;
  observerJid: string;
  observerPassword: string;
  pushSecret: string;
  /** ejabberd's own PostgreSQL database (archives included), dropped before each run */
  sql: string;
}

/**
 * An instance on the ports of `base` (see instancePorts), with secrets and an SQL database
 * named after `name`.
 */
export function instanceAt(o: {
  home: string;
  base: number;
  domain: string;
  name: string;
}): EjabberdInstance {
  const { base, domain, name } = o;
  const [c2sPort, httpPort, componentPort, distPort] = instancePorts(base);
  return {
    home: o.home,
    domain,
    service: `xmpp://127.0.0.1:${c2sPort}`,
    c2sPort,
    httpPort,
    componentPort,
    distPort,
    observerJid: `observer@${domain}`,
    observerPassword: `observer-${name}-password`,
    pushSecret: `push-${name}-secret`,
    sql: `postgres://postgres@127.0.0.1:5432/syncside_ejabberd_${name}_${base}`,
  };
}

/** The ports an instance at `base` listens on: c2s, HTTP API, component, Erlang distribution. */
function instancePorts(base: number): [number, number, number, number] {
  return [base + 22, base + 80, base + 47, base + 71];
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/**
 * A port base, `from` plus a multiple of 100 below `to`, none of whose instance ports anything
 * listens on now: another instance (the benchmark's own, a developer's) may hold a base picked
 * blindly.
 */
export async function freeInstanceBase(from: number, to: number): Promise<number> {
  const bases = Math.floor((to - from) / 100);
  for (let attempt = 0; attempt < 2 * bases; attempt++) {
    const base = from + 100 * randomInt(0, bases);
    const free = await Promise.all(instancePorts(base).map(portFree));
    if (free.every(Boolean)) return base;
  }
  throw new Error(`no port base in [${from}, ${to}) has all its ports free`);
}

export function testInstance(root: string): EjabberdInstance {
  return instanceAt({
    home: join(root, ".ejabberd", "test"),
    base: Number(process.env.TEST_EJABBERD_PORT_BASE ?? 25200),
    domain: "example.test",
    name: "test",
  });
}

export function instanceEnv(i: EjabberdInstance): NodeJS.ProcessEnv {
  return {
    ...process.env,
    EJABBERD_HOME: i.home,
    XMPP_DOMAIN: i.domain,
    EJABBERD_C2S_PORT: String(i.c2sPort),
    EJABBERD_HTTP_PORT: String(i.httpPort),
    EJABBERD_COMPONENT_PORT: String(i.componentPort),
    EJABBERD_DIST_PORT: String(i.distPort),
    OBSERVER_JID: i.observerJid,
    OBSERVER_PASSWORD: i.observerPassword,
    PUSH_COMPONENT_SECRET: i.pushSecret,
    EJABBERD_SQL: i.sql,
  };
}

export async function ejabberdScript(root: string, i: EjabberdInstance, ...args: string[]) {
  return run("bash", [join(root, "scripts", "ejabberd.sh"), ...args], {
    env: instanceEnv(i),
    maxBuffer: 16 * 1024 * 1024,
  });
}

/** Calls one mod_http_api command (open to loopback in the project's config). */
export async function api(i: EjabberdInstance, command: string, args: Record<string, unknown>) {
  const res = await fetch(`http://127.0.0.1:${i.httpPort}/api/${command}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(args),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`ejabberd api ${command} failed: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

export interface TestUser {
  jid: string;
  username: string;
  password: string;
}

/** A fresh account with a unique name, so tests never share one. */
export async function createUser(i: EjabberdInstance, prefix = "user"): Promise<TestUser> {
  const username = `${prefix}-${randomBytes(4).toString("hex")}`;
  const password = `pw-${randomBytes(8).toString("hex")}`;
  await api(i, "register", { user: username, host: i.domain, password });
  return { jid: `${username}@${i.domain}`, username, password };
}

/** `n` fresh accounts, registered ten at a time over ejabberd's HTTP API. */
export async function createUsers(
  i: EjabberdInstance,
  prefix: string,
  n: number,
): Promise<TestUser[]> {
  const users: TestUser[] = [];
  for (let k = 0; k < n; k += 10) {
    const chunk = Math.min(10, n - k);
    users.push(...(await Promise.all(Array.from({ length: chunk }, () => createUser(i, prefix)))));
  }
  return users;
}

/** A logged-in @xmpp/client session with initial presence sent. */
export async function connectUser(
  i: EjabberdInstance,
  user: TestUser,
  resource = "phone",
): Promise<Client> {
  const xmpp = client({
    service: i.service,
    domain: i.domain,
    username: user.username,
    password: user.password,
    resource,
  });
  xmpp.on("error", () => {});
  // Tests need no session resumption, and xmpp.js 0.14's acks sometimes overcount, which makes
  // ejabberd close the stream mid-test ("acknowledged 2 stanzas, but only 1 were sent").
  declineStreamManagement(xmpp);
  // Tests compare what clients receive with what they sent, non-ASCII text included.
  readStreamIntact(xmpp);
  await xmpp.start();
  await xmpp.send(xml("presence"));
  return xmpp;
}
