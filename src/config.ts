import proxyaddr from "proxy-addr";
import { z } from "zod";
import { plainly } from "./validation.js";
import { prepBareJid } from "./xmpp/jid-prep.js";

/** Thrown by loadConfig with one line per bad variable; main.ts prints it and exits. */
export class ConfigError extends Error {
  constructor(readonly issues: string[]) {
    super(`invalid configuration:\n${issues.map((i) => `  ${i}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

/** Transactions an ingest batch is split into on PostgreSQL (INGEST_LANES): one per core of the unit. */
export const DEFAULT_INGEST_LANES = 2;

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "90", "90s", "15m", "4h", "30d" → milliseconds; a bare number means seconds. */
export function parseDuration(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(text);
  if (!m) return null;
  return Math.round(Number(m[1]) * (UNITS[m[2] ?? "s"] ?? 1000));
}

const duration = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((v, ctx) => {
      const ms = parseDuration(v);
      if (ms === null || ms <= 0) {
        ctx.addIssue({
          code: "custom",
          message: `expected a duration like 90s, 15m, 4h or 30d, got "${v}"`,
        });
        return z.NEVER;
      }
      return ms;
    });

const bareJid = z
  .string()
  .trim()
  .transform(prepBareJid)
  .pipe(z.string().regex(/^[^@/\s]+@[^@/\s]+$/, "expected a bare JID like name@example.org"));

const jidList = z
  .string()
  .default("")
  .transform((v) =>
    v
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean),
  )
  .pipe(z.array(bareJid));

const httpUrl = z
  .string()
  .trim()
  .regex(/^https?:\/\/[^/]+/, "expected http(s)://host…");
const baseUrl = (fallback: string) => httpUrl.default(fallback);

/**
 * TRUST_PROXY: which peers may name the client in X-Forwarded-For — a number of proxy hops,
 * or addresses, CIDR ranges and proxy-addr's names (loopback, linklocal, uniquelocal).
 */
const trustProxy = z
  .string()
  .trim()
  .optional()
  .transform((v, ctx) => {
    if (!v) return null;
    if (/^\d+$/.test(v)) return Number(v);
    const list = v
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean);
    try {
      trustOf(list);
    } catch (err) {
      ctx.addIssue({
        code: "custom",
        message: `expected a hop count or addresses, CIDR ranges, loopback, linklocal or uniquelocal: ${(err as Error).message}`,
      });
      return z.NEVER;
    }
    return list;
  });

/**
 * Whether the address `hop` steps from syncside (0: the socket's peer) may name the client in
 * X-Forwarded-For, for a TRUST_PROXY setting; null when unset (the header is not believed).
 * Throws for an address or range proxy-addr does not take.
 */
export function trustOf(setting: number | string[] | null) {
  if (setting === null) return null;
  if (typeof setting === "number") return (_address: string, hop: number) => hop < setting;
  return proxyaddr.compile(setting);
}

const APNS_AUTH = ["APNS_KEY", "APNS_KEY_ID", "APNS_TEAM_ID"] as const;

const port = (fallback: number) => z.coerce.number().int().min(1).max(65535).default(fallback);

const schema = z
  .object({
    DATABASE_URL: z
      .string()
      .trim()
      .optional()
      .transform((v) => (v ? v : undefined))
      .refine((v) => v === undefined || /^postgres(ql)?:\/\//.test(v), "expected postgres://…"),
    DATA_DIR: z.string().default("./data"),
    HOST: z.string().default("127.0.0.1"),
    PORT: port(8080),
    TRUST_PROXY: trustProxy,
    XMPP_SERVICE: z
      .string()
      .default("xmpp://127.0.0.1:5222")
      .refine(
        (v) => /^(xmpps?|wss?):\/\/[^/]+/.test(v),
        "expected xmpp://host:port or xmpps://host:port",
      ),
    XMPP_DOMAIN: z.string().trim().toLowerCase().min(1).default("localhost"),
    OBSERVER_JID: bareJid.optional(),
    OBSERVER_PASSWORD: z.string().min(1).default("observer-dev-password"),
    OBSERVER_RESOURCE: z.string().trim().min(1).max(64).default("syncside"),
    INGEST: z.enum(["on", "off"]).default("on"),
    INGEST_LOOKBACK: duration("30s"),
    INGEST_LANES: z.coerce.number().int().min(1).max(8).default(DEFAULT_INGEST_LANES),
    ADMIN_JIDS: jidList,
    TOKEN_TTL: duration("30d"),
    CALL_RING_TIMEOUT: duration("60s"),
    CALL_MAX_DURATION: duration("24h"),
    LOG_LEVEL: z
      .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"])
      .default("info"),
    METRICS_TOKEN: z.string().min(16, "expected at least 16 characters").optional(),
    PUSH_COMPONENT_SERVICE: z
      .string()
      .default("xmpp://127.0.0.1:5347")
      .refine((v) => /^xmpp:\/\/[^/]+:\d+$/.test(v), "expected xmpp://host:port"),
    PUSH_COMPONENT_DOMAIN: z.string().trim().toLowerCase().min(1).optional(),
    PUSH_COMPONENT_SECRET: z.string().optional(),
    PUSH_COALESCE: duration("2s"),
    APNS_KEY: z.string().optional(),
    APNS_KEY_ID: z.string().trim().optional(),
    APNS_TEAM_ID: z.string().trim().optional(),
    APNS_PRODUCTION_URL: baseUrl("https://api.push.apple.com"),
    APNS_SANDBOX_URL: baseUrl("https://api.sandbox.push.apple.com"),
    APNS_CA: z.string().optional(),
    FCM_SERVICE_ACCOUNT: z.string().optional(),
    FCM_TOKEN_URL: httpUrl.optional(),
    FCM_BASE_URL: httpUrl.default("https://fcm.googleapis.com"),
  })
  .superRefine(
    (c, ctx) => {
      // APNs token auth takes all three: with one left out, APNs devices would silently get
      // nothing, as if APNs were not configured at all.
      const given = APNS_AUTH.filter((name) => c[name] !== undefined);
      if (given.length === 0) return;
      for (const name of APNS_AUTH) {
        if (c[name] !== undefined) continue;
        ctx.addIssue({
          code: "custom",
          path: [name],
          message: `required when ${given.join(" and ")} ${given.length > 1 ? "are" : "is"} set: APNs token auth needs the key, its key id and the team id`,
        });
      }
    },
    // Also beside other bad variables: every problem is reported at once.
    { when: () => true },
  )
  .transform((c) => ({
    databaseUrl: c.DATABASE_URL,
    dataDir: c.DATA_DIR,
    host: c.HOST,
    port: c.PORT,
    /** unset = the socket's peer is the client; else who may name it in X-Forwarded-For */
    trustProxy: c.TRUST_PROXY,
    xmpp: {
      service: c.XMPP_SERVICE,
      domain: c.XMPP_DOMAIN,
      observerJid: c.OBSERVER_JID ?? `observer@${c.XMPP_DOMAIN}`,
      observerPassword: c.OBSERVER_PASSWORD,
      observerResource: c.OBSERVER_RESOURCE,
    },
    ingestEnabled: c.INGEST === "on",
    ingestLookBackMs: c.INGEST_LOOKBACK,
    /** transactions each ingest batch is split into by account, written side by side */
    ingestLanes: c.INGEST_LANES,
    adminJids: c.ADMIN_JIDS,
    tokenTtlMs: c.TOKEN_TTL,
    callRingTimeoutMs: c.CALL_RING_TIMEOUT,
    callMaxDurationMs: c.CALL_MAX_DURATION,
    logLevel: c.LOG_LEVEL,
    /** unset = /metrics answers anyone who can reach it */
    metricsToken: c.METRICS_TOKEN,
    push: {
      /** unset = this instance runs no XEP-0357 app server */
      componentSecret: c.PUSH_COMPONENT_SECRET,
      componentService: c.PUSH_COMPONENT_SERVICE,
      componentDomain: c.PUSH_COMPONENT_DOMAIN ?? `push.${c.XMPP_DOMAIN}`,
      coalesceMs: c.PUSH_COALESCE,
      apns: {
        /** a .p8 path or the PEM itself */
        key: c.APNS_KEY,
        keyId: c.APNS_KEY_ID,
        teamId: c.APNS_TEAM_ID,
        productionUrl: c.APNS_PRODUCTION_URL,
        sandboxUrl: c.APNS_SANDBOX_URL,
        /** extra trusted CA (path or PEM), for a test stand-in of APNs */
        ca: c.APNS_CA,
      },
      fcm: {
        /** a service-account JSON path or the JSON itself */
        serviceAccount: c.FCM_SERVICE_ACCOUNT,
        /** default: the service account's token_uri */
        tokenUrl: c.FCM_TOKEN_URL,
        baseUrl: c.FCM_BASE_URL,
      },
    },
  }));

export type Config = Readonly<z.output<typeof schema>>;

/** Reads only the variables it knows; every problem is reported, not just the first. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const present = Object.fromEntries(
    Object.entries(env).filter(([, v]) => v !== undefined && v !== ""),
  );
  const result = schema.safeParse(present);
  if (!result.success) {
    throw new ConfigError(
      result.error.issues.map((i) => `${String(i.path[0] ?? "config")}: ${plainly(i)}`),
    );
  }
  return Object.freeze(result.data);
}
