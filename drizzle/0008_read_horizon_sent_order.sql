DROP INDEX "messages_account_conversation_created";--> statement-breakpoint
CREATE INDEX "messages_account_conversation_sent" ON "messages" USING btree ("account_id","conversation_id","sent_at","created_seq");--> statement-breakpoint
ALTER TABLE "conversations" ADD COLUMN "read_at" timestamp with time zone;--> statement-breakpoint
-- Read up to the time of the event that last reset the count (a message, a marker, a request).
UPDATE "conversations" c SET "read_at" = e."sent_at"
  FROM "events" e WHERE e."account_id" = c."account_id" AND e."seq" = c."read_seq";--> statement-breakpoint
ALTER TABLE "conversations" DROP COLUMN "read_seq";
