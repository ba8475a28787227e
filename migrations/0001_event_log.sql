-- The event log: the single source of truth. Append-only, enforced below.
CREATE SCHEMA IF NOT EXISTS eventstore;

-- One row per stream; its version is the optimistic-concurrency token.
-- Appenders move `version` forward with a guarded UPDATE (or create the row),
-- which serialises concurrent writers of one stream on the row lock.
CREATE TABLE eventstore.streams (
    stream_id   UUID PRIMARY KEY,
    stream_type TEXT   NOT NULL,
    version     BIGINT NOT NULL CHECK (version >= 0)
);

CREATE TABLE eventstore.events (
    global_position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        UUID        NOT NULL UNIQUE,
    stream_id       UUID        NOT NULL,
    stream_type     TEXT        NOT NULL,
    stream_version  BIGINT      NOT NULL CHECK (stream_version >= 1),
    event_type      TEXT        NOT NULL,
    schema_version  INTEGER     NOT NULL CHECK (schema_version >= 1),
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    payload         JSONB       NOT NULL,
    metadata        JSONB       NOT NULL,
    -- Dense, unique versions per stream (the backstop behind the streams row lock).
    CONSTRAINT events_stream_version_unique UNIQUE (stream_id, stream_version)
);

-- Append-only, enforced by the database itself.
CREATE FUNCTION eventstore.refuse_log_mutation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'eventstore.events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER events_no_update_delete
    BEFORE UPDATE OR DELETE ON eventstore.events
    FOR EACH ROW EXECUTE FUNCTION eventstore.refuse_log_mutation();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON eventstore.events
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore.refuse_log_mutation();

-- Transactional outbox: one row per event still to be published to Kafka,
-- written in the same transaction as the event, deleted by the relay only
-- after the broker acknowledged it.
CREATE TABLE eventstore.outbox (
    global_position BIGINT PRIMARY KEY REFERENCES eventstore.events (global_position),
    enqueued_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
