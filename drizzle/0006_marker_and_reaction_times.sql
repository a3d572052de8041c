ALTER TABLE "conversations" ADD COLUMN "read_until_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "conversations" ADD COLUMN "peer_read_until_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "reacted_at" jsonb DEFAULT '{}'::jsonb NOT NULL;