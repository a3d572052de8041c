import { sql } from "drizzle-orm";
import { bigint, index, pgTable, text, timestamp, unique } from "drizzle-orm/pg-core";

export const PUSH_PLATFORMS = ["apns", "fcm"] as const;
export type PushPlatform = (typeof PUSH_PLATFORMS)[number];
export const PUSH_ENVIRONMENTS = ["production", "sandbox"] as const;
export type PushEnvironment = (typeof PUSH_ENVIRONMENTS)[number];

/**
 * A phone that receives pushes for an account. `node` and the secret (stored only as its SHA-256)
 * are what the phone hands ejabberd in its XEP-0357 `<enable/>`; ejabberd's publish carries both.
 */
export const pushDevices = pgTable(
  "push_devices",
  {
    id: text("id").primaryKey(),
    accountId: bigint("account_id", { mode: "number" }).notNull(),
    platform: text("platform", { enum: PUSH_PLATFORMS }).notNull(),
    token: text("token").notNull(),
    voipToken: text("voip_token"),
    appId: text("app_id").notNull(),
    environment: text("environment", { enum: PUSH_ENVIRONMENTS }).notNull(),
    /** RFC 8291 receiver key: uncompressed P-256 point and 16-byte auth secret, base64url */
    p256dh: text("p256dh").notNull(),
    auth: text("auth").notNull(),
    node: text("node").notNull().unique(),
    secretHash: text("secret_hash").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().default(sql`now()`),
    /** last (re-)registration: an APNs 410 older than this does not disable the device */
    registeredAt: timestamp("registered_at", { withTimezone: true }).notNull(),
    /** the account seq up to which alert pushes have covered incoming messages */
    alertedSeq: bigint("alerted_seq", { mode: "number" }).notNull().default(0),
    lastPushAt: timestamp("last_push_at", { withTimezone: true }),
    disabledAt: timestamp("disabled_at", { withTimezone: true }),
    disabledReason: text("disabled_reason"),
  },
  (t) => [
    unique("push_devices_account_token").on(t.accountId, t.platform, t.token),
    index("push_devices_token").on(t.platform, t.token),
  ],
);
