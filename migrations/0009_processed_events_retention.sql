-- The saga's retention pruner (saga/src/retention.rs) deletes processed-event
-- rows oldest first, up to a checkpoint's time: this index lets each batch
-- start at the oldest rows instead of scanning the whole table.
CREATE INDEX processed_events_by_time ON saga.processed_events (processed_at);
