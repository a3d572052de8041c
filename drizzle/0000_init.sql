CREATE TABLE "accounts" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "accounts_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"jid" text NOT NULL,
	"last_seq" bigint DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "accounts_jid_unique" UNIQUE("jid")
);
--> statement-breakpoint
CREATE TABLE "calls" (
	"account_id" bigint NOT NULL,
	"call_id" text NOT NULL,
	"conversation_id" bigint NOT NULL,
	"peer_jid" text NOT NULL,
	"direction" text NOT NULL,
	"media" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"state" text NOT NULL,
	"proposed_at" timestamp with time zone,
	"updated_at" timestamp with time zone NOT NULL,
	"answered_at" timestamp with time zone,
	"answered_by" text,
	"ended_at" timestamp with time zone,
	"end_reason" text,
	"expires_at" timestamp with time zone,
	"migrated_to" text,
	"seq" bigint NOT NULL,
	CONSTRAINT "calls_account_call" UNIQUE("account_id","call_id")
);
--> statement-breakpoint
CREATE TABLE "checkpoints" (
	"source" text PRIMARY KEY NOT NULL,
	"position" text NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "conversations" (
	"account_id" bigint NOT NULL,
	"id" bigint GENERATED ALWAYS AS IDENTITY (sequence name "conversations_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"peer_jid" text NOT NULL,
	"version" bigint NOT NULL,
	"last_event_seq" bigint NOT NULL,
	"last_message_at" timestamp with time zone,
	"unread_count" integer DEFAULT 0 NOT NULL,
	"read_until" text,
	"peer_read_until" text,
	"pinned" boolean DEFAULT false NOT NULL,
	"muted_until" timestamp with time zone,
	"archived" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "conversations_account_id_id_pk" PRIMARY KEY("account_id","id"),
	CONSTRAINT "conversations_account_peer" UNIQUE("account_id","peer_jid")
);
--> statement-breakpoint
CREATE TABLE "events" (
	"account_id" bigint NOT NULL,
	"seq" bigint NOT NULL,
	"conversation_id" bigint NOT NULL,
	"kind" text NOT NULL,
	"direction" text NOT NULL,
	"message_id" text,
	"origin_id" text,
	"stanza_id" text,
	"target_id" text,
	"body" text,
	"payload" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"sent_at" timestamp with time zone NOT NULL,
	"ingested_at" timestamp with time zone DEFAULT now() NOT NULL,
	"dedupe_key" text NOT NULL,
	CONSTRAINT "events_account_id_seq_pk" PRIMARY KEY("account_id","seq"),
	CONSTRAINT "events_account_dedupe" UNIQUE("account_id","dedupe_key")
);
--> statement-breakpoint
CREATE TABLE "messages" (
	"account_id" bigint NOT NULL,
	"conversation_id" bigint NOT NULL,
	"direction" text NOT NULL,
	"message_id" text NOT NULL,
	"origin_id" text,
	"stanza_id" text,
	"body" text,
	"sent_at" timestamp with time zone NOT NULL,
	"edited_at" timestamp with time zone,
	"retracted_at" timestamp with time zone,
	"reactions" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_seq" bigint NOT NULL,
	"seq" bigint NOT NULL,
	CONSTRAINT "messages_key" UNIQUE("account_id","conversation_id","direction","message_id")
);
--> statement-breakpoint
CREATE TABLE "store_meta" (
	"id" integer PRIMARY KEY DEFAULT 1 NOT NULL,
	"epoch" text NOT NULL,
	"position_key" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "tokens" (
	"id" text PRIMARY KEY NOT NULL,
	"account_id" bigint NOT NULL,
	"scope" text NOT NULL,
	"hash" text NOT NULL,
	"label" text DEFAULT '' NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_used_at" timestamp with time zone,
	"expires_at" timestamp with time zone NOT NULL,
	"revoked_at" timestamp with time zone,
	CONSTRAINT "tokens_hash_unique" UNIQUE("hash")
);
--> statement-breakpoint
CREATE INDEX "calls_account_state" ON "calls" USING btree ("account_id","state");--> statement-breakpoint
CREATE INDEX "conversations_account_version" ON "conversations" USING btree ("account_id","version");--> statement-breakpoint
CREATE INDEX "conversations_account_activity" ON "conversations" USING btree ("account_id","last_message_at","id");--> statement-breakpoint
CREATE INDEX "events_account_conversation_seq" ON "events" USING btree ("account_id","conversation_id","seq");--> statement-breakpoint
CREATE INDEX "events_account_conversation_target" ON "events" USING btree ("account_id","conversation_id","target_id");--> statement-breakpoint
CREATE INDEX "messages_account_conversation_seq" ON "messages" USING btree ("account_id","conversation_id","seq");--> statement-breakpoint
CREATE INDEX "messages_account_conversation_created" ON "messages" USING btree ("account_id","conversation_id","created_seq");--> statement-breakpoint
CREATE INDEX "messages_account_conversation_origin" ON "messages" USING btree ("account_id","conversation_id","origin_id");--> statement-breakpoint
CREATE INDEX "tokens_account" ON "tokens" USING btree ("account_id");