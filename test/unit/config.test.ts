import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, parseDuration } from "../../src/config.js";

describe("loadConfig", () => {
  it("works with nothing set: embedded database, local ejabberd, sane defaults", () => {
    const c = loadConfig({});
    expect(c).toEqual({
      databaseUrl: undefined,
      dataDir: "./data",
      host: "127.0.0.1",
      port: 8080,
      trustProxy: null,
      xmpp: {
        service: "xmpp://127.0.0.1:5222",
        domain: "localhost",
        observerJid: "observer@localhost",
        observerPassword: "observer-dev-password",
        observerResource: "syncside",
      },
      ingestEnabled: true,
      ingestLookBackMs: 30_000,
      ingestLanes: 2,
      adminJids: [],
      tokenTtlMs: 30 * 86_400_000,
      callRingTimeoutMs: 60_000,
      callMaxDurationMs: 24 * 3_600_000,
      logLevel: "info",
      push: {
        componentSecret: undefined,
        componentService: "xmpp://127.0.0.1:5347",
        componentDomain: "push.localhost",
        coalesceMs: 2000,
        apns: {
          key: undefined,
          keyId: undefined,
          teamId: undefined,
          productionUrl: "https://api.push.apple.com",
          sandboxUrl: "https://api.sandbox.push.apple.com",
          ca: undefined,
        },
        fcm: {
          serviceAccount: undefined,
          tokenUrl: undefined,
          baseUrl: "https://fcm.googleapis.com",
        },
      },
    });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it("reads the push settings, the component domain following XMPP_DOMAIN", () => {
    const c = loadConfig({
      XMPP_DOMAIN: "example.org",
      PUSH_COMPONENT_SECRET: "s3cret",
      PUSH_COALESCE: "500ms",
      APNS_SANDBOX_URL: "https://127.0.0.1:8443",
    });
    expect(c.push).toMatchObject({
      componentSecret: "s3cret",
      componentDomain: "push.example.org",
      coalesceMs: 500,
      apns: { sandboxUrl: "https://127.0.0.1:8443" },
    });
    expect(() =>
      loadConfig({ PUSH_COMPONENT_SERVICE: "push.example.org", FCM_BASE_URL: "fcm" }),
    ).toThrow(
      /PUSH_COMPONENT_SERVICE: expected xmpp:\/\/host:port\n.*FCM_BASE_URL: expected http\(s\):\/\/host/,
    );
  });

  it("takes the APNs key, key id and team id all three or none, reporting the missing beside other errors", () => {
    expect(
      loadConfig({ APNS_KEY: "/keys/AuthKey.p8", APNS_KEY_ID: "KEY123", APNS_TEAM_ID: "TEAM456" })
        .push.apns,
    ).toMatchObject({ key: "/keys/AuthKey.p8", keyId: "KEY123", teamId: "TEAM456" });
    let error: unknown;
    try {
      loadConfig({ APNS_KEY: "/keys/AuthKey.p8", PORT: "http" });
    } catch (err) {
      error = err;
    }
    expect((error as ConfigError).issues).toEqual([
      "PORT: expected a number",
      "APNS_KEY_ID: required when APNS_KEY is set: APNs token auth needs the key, its key id and the team id",
      "APNS_TEAM_ID: required when APNS_KEY is set: APNs token auth needs the key, its key id and the team id",
    ]);
    expect(() => loadConfig({ APNS_KEY_ID: "KEY123", APNS_TEAM_ID: "TEAM456" })).toThrow(
      "APNS_KEY: required when APNS_KEY_ID and APNS_TEAM_ID are set",
    );
  });

  it("reads every variable it knows", () => {
    const c = loadConfig({
      DATABASE_URL: "postgres://u@db:5432/syncside",
      PORT: "9000",
      XMPP_DOMAIN: "Example.ORG",
      ADMIN_JIDS: " Root@example.org , o\u00ADps@ＥXAMPLE.org ",
      TOKEN_TTL: "12h",
      CALL_RING_TIMEOUT: "45",
      INGEST: "off",
      UNRELATED: "ignored",
    });
    expect(c).toMatchObject({
      databaseUrl: "postgres://u@db:5432/syncside",
      port: 9000,
      xmpp: { domain: "example.org", observerJid: "observer@example.org" },
      adminJids: ["root@example.org", "ops@example.org"],
      tokenTtlMs: 12 * 3_600_000,
      callRingTimeoutMs: 45_000,
      ingestEnabled: false,
    });
  });

  it("takes a METRICS_TOKEN only long enough not to be guessed", () => {
    expect(loadConfig({}).metricsToken).toBeUndefined();
    expect(loadConfig({ METRICS_TOKEN: "0123456789abcdef" }).metricsToken).toBe("0123456789abcdef");
    expect(() => loadConfig({ METRICS_TOKEN: "short" })).toThrow(
      "METRICS_TOKEN: expected at least 16 characters",
    );
  });

  it("takes an INGEST_LANES between 1 and 8", () => {
    expect(loadConfig({ INGEST_LANES: "4" }).ingestLanes).toBe(4);
    expect(() => loadConfig({ INGEST_LANES: "0" })).toThrow(
      /^invalid configuration:\n {2}INGEST_LANES: /,
    );
    expect(() => loadConfig({ INGEST_LANES: "9" })).toThrow(/INGEST_LANES: /);
    expect(() => loadConfig({ INGEST_LANES: "two" })).toThrow(/INGEST_LANES: /);
  });

  it("takes a TRUST_PROXY as a hop count or a list of addresses and ranges", () => {
    expect(loadConfig({ TRUST_PROXY: "2" }).trustProxy).toBe(2);
    expect(loadConfig({ TRUST_PROXY: " loopback, 10.0.0.0/8 ,fd00::1 " }).trustProxy).toEqual([
      "loopback",
      "10.0.0.0/8",
      "fd00::1",
    ]);
    expect(() => loadConfig({ TRUST_PROXY: "the balancer" })).toThrow(/TRUST_PROXY: /);
    expect(() => loadConfig({ TRUST_PROXY: "10.0.0.0/99" })).toThrow(/TRUST_PROXY: /);
  });

  it("treats an empty variable as unset", () => {
    expect(loadConfig({ DATABASE_URL: "", PORT: "" })).toMatchObject({
      databaseUrl: undefined,
      port: 8080,
    });
  });

  it("names every bad variable, one line each", () => {
    let error: unknown;
    try {
      loadConfig({
        PORT: "http",
        DATABASE_URL: "mysql://x",
        ADMIN_JIDS: "not-a-jid",
        TOKEN_TTL: "forever",
        LOG_LEVEL: "loud",
      });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const issues = (error as ConfigError).issues;
    expect(issues.map((i) => i.split(":")[0])).toEqual(
      expect.arrayContaining(["PORT", "DATABASE_URL", "ADMIN_JIDS", "TOKEN_TTL", "LOG_LEVEL"]),
    );
    expect(issues).toHaveLength(5);
    expect(issues.find((i) => i.startsWith("TOKEN_TTL"))).toBe(
      'TOKEN_TTL: expected a duration like 90s, 15m, 4h or 30d, got "forever"',
    );
  });
});

describe("parseDuration", () => {
  it.each([
    ["90", 90_000],
    ["90s", 90_000],
    ["250ms", 250],
    ["15m", 900_000],
    ["1.5h", 5_400_000],
    ["30d", 2_592_000_000],
  ])("%s → %d ms", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(["", "s", "-5s", "5 weeks", "1e3"])("rejects %j", (text) => {
    expect(parseDuration(text)).toBeNull();
  });
});
