import { randomBytes } from "node:crypto";
import { connect, createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, inject, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { runIngest } from "../../src/ingest/leader.js";
import { IngestStats } from "../../src/ingest/stats.js";
import { createLogger } from "../../src/logger.js";
import { openTestStore, type TestStore } from "../helpers/database.js";
import { api } from "../helpers/ejabberd.js";
import { ingestEnv } from "../helpers/ingest.js";
import { freePort } from "../helpers/private-postgres.js";
import { waitFor } from "../helpers/wait.js";

/**
 * ejabberd keeps a stream whose login it refused open until its own timeout (about 30 s); the
 * bounds below stay well under it, so a login that only recovers by that timeout fails here.
 */
const ONLINE_WITHIN_MS = 10_000;

describe("the observer's login", () => {
  const ejabberd = inject("ejabberd");
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** Ingest as an observer account of its own, logging to `lines`. */
  async function ingestAs(user: string, env: Record<string, string> = {}) {
    const t: TestStore = await openTestStore("postgres");
    const lines: { msg: string }[] = [];
    const logger = createLogger("info", {
      write: (line: string) => lines.push(JSON.parse(line) as { msg: string }),
    });
    const config = loadConfig({
      ...ingestEnv(ejabberd),
      OBSERVER_JID: `${user}@${ejabberd.domain}`,
      OBSERVER_PASSWORD: "observer-login-password",
      ...env,
    });
    const stats = new IngestStats();
    const controller = new AbortController();
    const done = runIngest({ store: t.store, config, logger, stats, signal: controller.signal });
    cleanups.push(async () => {
      controller.abort();
      await done;
      await t.close();
    });
    const online = () =>
      waitFor(() => stats.connected && !stats.catchingUp, {
        timeoutMs: ONLINE_WITHIN_MS,
        what: "the observer online",
      });
    const failures = () => lines.filter((l) => l.msg === "observer login failed, retrying").length;
    return { online, failures };
  }

  const register = (user: string) =>
    api(ejabberd, "register", {
      user,
      host: ejabberd.domain,
      password: "observer-login-password",
    });

  it("logs in as soon as the observer account exists, after refused logins", async () => {
    const user = `observer-late-${randomBytes(4).toString("hex")}`;
    const ingest = await ingestAs(user);
    await waitFor(async () => ingest.failures() >= 2, { what: "refused logins" });
    await register(user);
    await ingest.online();
  });

  it("logs in once ejabberd listens, and stops retrying then", async () => {
    const user = `observer-early-${randomBytes(4).toString("hex")}`;
    await register(user);
    // A port nobody listens on yet: ejabberd "starting" after syncside.
    const port = await freePort();
    const ingest = await ingestAs(user, { XMPP_SERVICE: `xmpp://127.0.0.1:${port}` });
    await waitFor(async () => ingest.failures() >= 2, { what: "refused connections" });
    const target = new URL(ejabberd.service);
    const sockets = new Set<Socket>();
    const proxy: Server = createServer((socket) => {
      const upstream = connect(Number(target.port), target.hostname);
      for (const s of [socket, upstream]) {
        sockets.add(s);
        s.on("error", () => {});
      }
      socket.pipe(upstream).pipe(socket);
    });
    await new Promise<void>((resolve) => proxy.listen(port, "127.0.0.1", resolve));
    cleanups.push(async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => proxy.close(resolve));
    });
    await ingest.online();
    const after = ingest.failures();
    await new Promise((resolve) => setTimeout(resolve, 3000));
    expect(ingest.failures()).toBe(after);
  });
});
