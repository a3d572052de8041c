-- A session id longer than any stored id (MAX_ID_BYTES) can name no stored session; ingest now
-- reads such a finish as a plain one. Rows kept from before would not fit in the index.
UPDATE "calls" SET "migrated_to" = NULL WHERE octet_length("migrated_to") > 1024;--> statement-breakpoint
CREATE INDEX "calls_account_migrated_to" ON "calls" USING btree ("account_id","migrated_to") WHERE "calls"."migrated_to" is not null;
