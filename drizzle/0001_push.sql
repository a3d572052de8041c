CREATE TABLE "push_deliveries" (
	"device_id" text NOT NULL,
	"call_id" text NOT NULL,
	"account_id" bigint NOT NULL,
	"delivered_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "push_deliveries_device_id_call_id_pk" PRIMARY KEY("device_id","call_id")
);
--> statement-breakpoint
CREATE TABLE "push_devices" (
	"id" text PRIMARY KEY NOT NULL,
	"account_id" bigint NOT NULL,
	"platform" text NOT NULL,
	"token" text NOT NULL,
	"voip_token" text,
	"app_id" text NOT NULL,
	"environment" text NOT NULL,
	"p256dh" text NOT NULL,
	"auth" text NOT NULL,
	"node" text NOT NULL,
	"secret_hash" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"registered_at" timestamp with time zone NOT NULL,
	"alerted_seq" bigint DEFAULT 0 NOT NULL,
	"last_push_at" timestamp with time zone,
	"disabled_at" timestamp with time zone,
	"disabled_reason" text,
	CONSTRAINT "push_devices_node_unique" UNIQUE("node"),
	CONSTRAINT "push_devices_account_token" UNIQUE("account_id","platform","token")
);
--> statement-breakpoint
CREATE INDEX "push_devices_token" ON "push_devices" USING btree ("platform","token");