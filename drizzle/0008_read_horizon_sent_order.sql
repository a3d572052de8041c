DROP INDEX "messages_account_conversation_created";--> statement-breakpoint
CREATE INDEX "messages_account_conversation_sent" ON "messages" USING btree ("account_id","conversation_id","sent_at","created_seq");--> statement-breakpoint
ALTER TABLE "conversations" ADD COLUMN "read_at" timestamp with time zone;--> statement-breakpoint
-- Read up to the time of the event that last reset the count (a message, a marker, a request).
UPDATE "conversations" c SET "read_at" = e."sent_at"
  FROM "events" e WHERE e."account_id" = c."account_id" AND e."seq" = c."read_seq";--> statement-breakpoint
-- Counted again by the new rule: what was kept by write order may include messages sent earlier.
UPDATE "conversations" c SET "unread_count" = (
  SELECT count(*) FROM "messages" m
  WHERE m."account_id" = c."account_id" AND m."conversation_id" = c."id" AND m."direction" = 'in'
    AND m."retracted_at" IS NULL AND (c."read_at" IS NULL OR m."sent_at" > c."read_at"));--> statement-breakpoint
ALTER TABLE "conversations" DROP COLUMN "read_seq";
