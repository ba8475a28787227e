-- Bookkeeping of the command side.
CREATE SCHEMA IF NOT EXISTS command;

-- Responses of commands sent with an Idempotency-Key. Written in the same
-- transaction as the command's events, so a key is recorded iff its effect is.
CREATE TABLE command.idempotency_keys (
    idempotency_key TEXT        PRIMARY KEY,
    request_hash    TEXT        NOT NULL,
    response_status SMALLINT    NOT NULL,
    response_body   JSONB       NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
