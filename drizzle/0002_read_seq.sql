ALTER TABLE "conversations" ADD COLUMN "read_seq" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
-- Conversations with nothing unread were read up to their latest event.
UPDATE "conversations" SET "read_seq" = "version" WHERE "unread_count" = 0;
