-- APNs tokens are stored lower-case from now on. A row spelt otherwise would stay beside the one
-- its phone registers next, and both would be pushed: of two spellings of one token in one
-- account, the one registered last stays (its node is the one ejabberd publishes to), then
-- every APNs token is lower-cased.
DELETE FROM "push_deliveries" WHERE "device_id" IN (
  SELECT d."id" FROM "push_devices" d
  WHERE d."platform" = 'apns' AND EXISTS (
    SELECT 1 FROM "push_devices" o
    WHERE o."account_id" = d."account_id" AND o."platform" = 'apns'
      AND lower(o."token") = lower(d."token") AND o."id" <> d."id"
      AND (o."registered_at", o."id") > (d."registered_at", d."id")));
--> statement-breakpoint
DELETE FROM "push_devices" d
  WHERE d."platform" = 'apns' AND EXISTS (
    SELECT 1 FROM "push_devices" o
    WHERE o."account_id" = d."account_id" AND o."platform" = 'apns'
      AND lower(o."token") = lower(d."token") AND o."id" <> d."id"
      AND (o."registered_at", o."id") > (d."registered_at", d."id"));
--> statement-breakpoint
UPDATE "push_devices" SET "token" = lower("token"), "voip_token" = lower("voip_token")
  WHERE "platform" = 'apns' AND ("token" <> lower("token") OR "voip_token" <> lower("voip_token"));
