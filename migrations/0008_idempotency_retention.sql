-- Idempotency records expire after the retry window (command-api
-- --idempotency-retention-secs, default 24 h): lookups ignore older ones and
-- a background task deletes them, oldest first, through this index.
CREATE INDEX idempotency_keys_by_age ON command.idempotency_keys (created_at);
