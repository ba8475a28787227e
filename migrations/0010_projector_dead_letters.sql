-- Messages the live projector gave up on (also published to <topic>.dlq),
-- shaped like saga.dead_letters but keyed to event streams: while a stream
-- has a parked letter, its later events are parked behind it (reason
-- `blocked by dead letter #N`), never applied out of order, never skipped.
-- `projector dead-letters list|show|redrive` and the console read and
-- re-drive them through the projector library (projector::dead_letter).
--
-- The projector connects as the app role `orders`, which runs the
-- migrations and so owns the schema and table; nothing else needs them
-- (the query side's `orders_query` role reads `read` only).
CREATE SCHEMA IF NOT EXISTS projector;

CREATE TABLE projector.dead_letters (
    id              BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic           TEXT        NOT NULL,
    partition       INTEGER     NOT NULL,
    "offset"        BIGINT      NOT NULL,
    message_key     TEXT,
    -- The Kafka value as received (UTF-8, lossily): possibly the corrupt thing.
    payload         TEXT        NOT NULL,
    headers         JSONB       NOT NULL,
    -- What is known of the event (from the envelope, else the message's
    -- headers and key); NULL when nothing says.
    event_id        UUID,
    stream_id       UUID,
    stream_type     TEXT,
    global_position BIGINT,
    stream_version  BIGINT,
    reason          TEXT        NOT NULL,
    attempts        INTEGER     NOT NULL,
    status          TEXT        NOT NULL DEFAULT 'parked' CHECK (status IN ('parked', 'redriven')),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    redriven_at     TIMESTAMPTZ,
    -- One letter per source message: a redelivery parks nothing twice.
    UNIQUE (topic, partition, "offset")
);

-- "Is this stream parked?", asked once per batch for the batch's streams.
CREATE INDEX projector_dead_letters_parked_by_stream ON projector.dead_letters (stream_id, id)
    WHERE status = 'parked';
