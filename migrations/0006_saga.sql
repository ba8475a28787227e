-- The order saga's own state: one row per order, the events it has
-- processed (idempotency), and the messages it could not process.
CREATE SCHEMA IF NOT EXISTS saga;

CREATE TABLE saga.order_sagas (
    order_id        UUID        PRIMARY KEY,
    phase           TEXT        NOT NULL,
    -- domain::saga::OrderSaga as JSON.
    state           JSONB       NOT NULL,
    -- When the effect runner must look at this saga next (a provider call
    -- to make or retry, or a deadline); NULL when nothing is pending.
    -- Deadlines live here, so they survive restarts.
    next_action_at  TIMESTAMPTZ,
    -- Provider calls attempted for the current effect (for backoff).
    effect_attempts INTEGER     NOT NULL DEFAULT 0,
    -- The event that asked for the current effect: the causation id of
    -- whatever the effect's outcome appends.
    effect_cause    UUID,
    correlation_id  UUID        NOT NULL,
    traceparent     TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX order_sagas_due ON saga.order_sagas (next_action_at)
    WHERE next_action_at IS NOT NULL;

-- Event ids the saga has handled, written in the same transaction as the
-- handler's effects: a redelivered event finds its id here and changes nothing.
CREATE TABLE saga.processed_events (
    event_id     UUID        PRIMARY KEY,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Messages the saga worker gave up on (also published to <topic>.dlq).
CREATE TABLE saga.dead_letters (
    id          BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic       TEXT        NOT NULL,
    partition   INTEGER     NOT NULL,
    "offset"    BIGINT      NOT NULL,
    message_key TEXT,
    payload     TEXT        NOT NULL,
    headers     JSONB       NOT NULL,
    event_id    UUID,
    order_id    UUID,
    reason      TEXT        NOT NULL,
    attempts    INTEGER     NOT NULL,
    status      TEXT        NOT NULL DEFAULT 'parked' CHECK (status IN ('parked', 'redriven')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    redriven_at TIMESTAMPTZ,
    UNIQUE (topic, partition, "offset")
);
CREATE INDEX dead_letters_parked_by_order ON saga.dead_letters (order_id)
    WHERE status = 'parked';
