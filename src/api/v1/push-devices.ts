import { ECDH } from "node:crypto";
import { createRoute, z } from "@hono/zod-openapi";
import { AppError } from "../../errors.js";
import { deleteDevice, listDevices, type PushDevice, registerDevice } from "../../push/devices.js";
import { PUSH_ENVIRONMENTS, PUSH_PLATFORMS } from "../../store/schema/push-devices.js";
import { accountRoute } from "../auth.js";
import type { App } from "../context.js";
import { errorResponses, iso, jsonBody, Timestamp } from "../schemas.js";

/** base64url that decodes to exactly `bytes` bytes (no padding, as RFC 8291 keys travel). */
function base64urlOf(bytes: number, what: string) {
  return z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/, `expected base64url (no padding) of ${what}`)
    .refine((v) => Buffer.from(v, "base64url").length === bytes, `expected ${what}`);
}

const P256DH = base64urlOf(65, "a 65-byte uncompressed P-256 point")
  .refine(
    (v) => Buffer.from(v, "base64url")[0] === 0x04,
    "expected an uncompressed P-256 point (first byte 0x04)",
  )
  // Every alert to a key off the curve would fail to encrypt, and nothing would tell the app.
  .refine(isP256Point, "expected a point on the P-256 curve");

function isP256Point(v: string): boolean {
  try {
    ECDH.convertKey(Buffer.from(v, "base64url"), "prime256v1");
    return true;
  } catch {
    return false;
  }
}

/**
 * Provider tokens: APNs hex, FCM base64url-ish with ":"; printable ASCII, never whitespace. Real
 * ones are a few hundred characters at most (APNs 64 hex digits, FCM about 160). Both bounds
 * keep a token an index key of the store, which PostgreSQL refuses over about 2.7 kB.
 */
const ProviderToken = z
  .string()
  .min(1)
  .max(1024)
  .regex(/^[\x21-\x7e]+$/, "expected printable ASCII without spaces");

/**
 * APNs device and PushKit tokens are hex; Apple says not to count on 32 bytes, so any whole
 * number of bytes up to 100 is taken.
 */
const APNS_TOKEN = /^(?:[0-9a-f]{2}){1,100}$/i;
const NOT_APNS_TOKEN = "expected an APNs token: an even number of hex digits, at most 200";

const DeviceRequest = z
  .strictObject({
    platform: z.enum(PUSH_PLATFORMS),
    token: ProviderToken.openapi({
      description:
        "APNs device token (alert pushes; an even number of hex digits, at most 200, stored lower-case) or FCM registration token",
      example: "5f0c…a81e",
    }),
    voip_token: ProviderToken.nullable().optional().openapi({
      description:
        "APNs PushKit token (hex like `token`, stored lower-case); without it an iPhone is not rung for calls. Refused for FCM, which rings through `token`",
    }),
    app_id: z
      .string()
      .min(1)
      .max(255)
      .regex(/^[A-Za-z0-9._-]+$/, "expected a bundle id like org.example.chat")
      .openapi({
        description: "iOS bundle id (APNs topic) or Android package",
        example: "org.example.chat",
      }),
    environment: z.enum(PUSH_ENVIRONMENTS).default("production").openapi({
      description: "APNs environment of the app build; ignored for FCM",
    }),
    encryption: z
      .strictObject({
        p256dh: P256DH.openapi({
          description: "base64url uncompressed P-256 public key (65 bytes)",
        }),
        auth: base64urlOf(16, "a 16-byte auth secret").openapi({
          description: "base64url 16-byte auth secret",
        }),
      })
      .openapi({
        description:
          "RFC 8291 receiver key: alert payloads are encrypted to it (aes128gcm); the device keeps the private half",
      }),
  })
  .superRefine((d, ctx) => {
    const voipToken = d.voip_token ?? null;
    if (d.platform === "fcm") {
      if (voipToken !== null) {
        ctx.addIssue({
          code: "custom",
          path: ["voip_token"],
          message: "is for APNs only: FCM rings a device through its token",
        });
      }
      return;
    }
    if (!APNS_TOKEN.test(d.token)) {
      ctx.addIssue({ code: "custom", path: ["token"], message: NOT_APNS_TOKEN });
    }
    if (voipToken !== null && !APNS_TOKEN.test(voipToken)) {
      ctx.addIssue({ code: "custom", path: ["voip_token"], message: NOT_APNS_TOKEN });
    }
  })
  .openapi("PushDeviceRequest");

const DeviceFields = {
  id: z.string().openapi({ example: "dev_Xk3q9P0aZc1m" }),
  platform: z.enum(PUSH_PLATFORMS),
  token: z.string(),
  voip_token: z.string().nullable().openapi({
    description:
      "APNs PushKit token; null when none was registered or once APNs refused it (410, BadDeviceToken, DeviceTokenNotForTopic): the device keeps its alerts but is not rung for calls until it registers a new one",
  }),
  app_id: z.string(),
  environment: z.enum(PUSH_ENVIRONMENTS),
  node: z.string().openapi({ description: "the XEP-0357 node to enable on the XMPP server" }),
  jid: z.string().openapi({
    description: "the push service's JID to enable on the XMPP server",
    example: "push.example.org",
  }),
  created_at: Timestamp,
  registered_at: Timestamp,
  last_push_at: Timestamp.nullable(),
  disabled_at: Timestamp.nullable().openapi({
    description: "set when the platform reported the token dead; register again to re-enable",
  }),
  disabled_reason: z.string().nullable(),
};

const PushDeviceSchema = z.object(DeviceFields).openapi("PushDevice");

const RegisteredDevice = z
  .object({
    ...DeviceFields,
    secret: z.string().openapi({
      description:
        "the XEP-0357 publish secret to enable on the XMPP server; shown only in this response",
    }),
  })
  .openapi("RegisteredPushDevice");

const DeviceList = z.object({ devices: z.array(PushDeviceSchema) }).openapi("PushDeviceList");

const DeviceId = z.object({
  id: z
    .string()
    .max(100)
    .openapi({ param: { name: "id", in: "path" }, example: "dev_Xk3q9P0aZc1m" }),
});

const register = createRoute({
  ...accountRoute,
  middleware: [...accountRoute.middleware, jsonBody],
  method: "post",
  path: "/v1/push/devices",
  tags: ["push"],
  summary: "Register this phone for push; returns the node and secret to enable on ejabberd",
  description:
    "Then send the XMPP server an XEP-0357 `<enable jid='{jid}' node='{node}'>` with a " +
    "publish-options form whose `secret` field is `secret`. Registering the same token again " +
    "updates the device (same id and node, a new secret) and re-enables it.",
  request: {
    body: { required: true, content: { "application/json": { schema: DeviceRequest } } },
  },
  responses: {
    201: {
      description: "the device; its secret is never shown again",
      content: { "application/json": { schema: RegisteredDevice } },
    },
    ...errorResponses("validation_failed", "unauthorized", "payload_too_large"),
  },
});

const list = createRoute({
  ...accountRoute,
  method: "get",
  path: "/v1/push/devices",
  tags: ["push"],
  summary: "The caller's push devices (never their secrets)",
  responses: {
    200: { description: "newest first", content: { "application/json": { schema: DeviceList } } },
    ...errorResponses("unauthorized"),
  },
});

const remove = createRoute({
  ...accountRoute,
  method: "delete",
  path: "/v1/push/devices/{id}",
  tags: ["push"],
  summary: "Stop pushing to one of the caller's devices",
  request: { params: DeviceId },
  responses: {
    204: { description: "deleted; ejabberd's next publish for it is refused" },
    ...errorResponses("validation_failed", "unauthorized", "not_found"),
  },
});

function toDevice(d: PushDevice, jid: string) {
  return {
    id: d.id,
    platform: d.platform,
    token: d.token,
    voip_token: d.voipToken,
    app_id: d.appId,
    environment: d.environment,
    node: d.node,
    jid,
    created_at: d.createdAt.toISOString(),
    registered_at: d.registeredAt.toISOString(),
    last_push_at: iso(d.lastPushAt),
    disabled_at: iso(d.disabledAt),
    disabled_reason: d.disabledReason,
  };
}

export function registerPushDevices(app: App): void {
  app.openapi(register, async (c) => {
    const { store, config, clock } = c.var.deps;
    const { accountId } = c.var.principal;
    const body = c.req.valid("json");
    // Hex in either case is one APNs token: one device, and one spelling to match it by.
    const apns = body.platform === "apns";
    const { device, secret } = await registerDevice(store.db, {
      accountId,
      platform: body.platform,
      token: apns ? body.token.toLowerCase() : body.token,
      voipToken: apns ? (body.voip_token?.toLowerCase() ?? null) : null,
      appId: body.app_id,
      environment: body.environment,
      p256dh: body.encryption.p256dh,
      auth: body.encryption.auth,
      now: clock(),
    });
    c.var.logger.info(
      { accountId, deviceId: device.id, platform: device.platform },
      "push device registered",
    );
    return c.json({ ...toDevice(device, config.push.componentDomain), secret }, 201);
  });

  app.openapi(list, async (c) => {
    const { store, config } = c.var.deps;
    const rows = await listDevices(store.db, c.var.principal.accountId);
    return c.json({ devices: rows.map((d) => toDevice(d, config.push.componentDomain)) }, 200);
  });

  app.openapi(remove, async (c) => {
    const { store } = c.var.deps;
    const { id } = c.req.valid("param");
    if (!(await deleteDevice(store.db, c.var.principal.accountId, id))) {
      throw new AppError("not_found", `no push device ${id}`);
    }
    return c.body(null, 204);
  });
}
