-- Store upkeep prunes push_deliveries oldest first: without it, each pass would read the table.
CREATE INDEX "push_deliveries_delivered_at" ON "push_deliveries" USING btree ("delivered_at");