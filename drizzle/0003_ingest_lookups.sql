DROP INDEX "events_account_conversation_target";--> statement-breakpoint
CREATE INDEX "events_account_target" ON "events" USING btree ("account_id","target_id") WHERE "events"."kind" in ('edit', 'retract', 'reaction', 'call');--> statement-breakpoint
-- A conversation belongs to one account. Told so, PostgreSQL no longer takes (account_id,
-- conversation_id) for a single row and looks a message or call up by its full key, instead of
-- reading every row of the conversation through whichever index starts with those two columns.
CREATE STATISTICS "messages_account_conversation" (dependencies) ON "account_id", "conversation_id" FROM "messages";--> statement-breakpoint
CREATE STATISTICS "events_account_conversation" (dependencies) ON "account_id", "conversation_id" FROM "events";
