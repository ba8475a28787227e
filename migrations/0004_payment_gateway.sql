-- The ledger of the payment-gateway SIMULATOR (the `payment-gateway` crate), a
-- stand-in for a real payment provider. This schema belongs to the simulator
-- alone: no other process reads or writes it (tests read it to check the
-- provider's side of the books). It lives in the shared migrations folder only
-- because every process applies the same migrations.
CREATE SCHEMA IF NOT EXISTS gateway;

-- Every charge the provider recorded, captured or declined. A request that
-- the provider "lost" (tok_hang*, a 503) leaves no row.
CREATE TABLE gateway.charges (
    charge_id       TEXT        PRIMARY KEY,            -- ch_<uuid simple>
    idempotency_key TEXT        NOT NULL UNIQUE,        -- one charge per key, ever
    request_hash    TEXT        NOT NULL,               -- fingerprint of the body first sent with the key
    reference       UUID        NOT NULL,               -- the merchant's reference (an order id)
    amount_cents    BIGINT      NOT NULL CHECK (amount_cents > 0),
    currency        TEXT        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    token           TEXT        NOT NULL,
    status          TEXT        NOT NULL CHECK (status IN ('captured', 'declined', 'refunded')),
    decline_code    TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    refunded_at     TIMESTAMPTZ,
    refund_id       TEXT        UNIQUE,                 -- re_<uuid simple>
    CHECK ((status = 'declined') = (decline_code IS NOT NULL)),
    CHECK ((status = 'refunded') = (refund_id IS NOT NULL AND refunded_at IS NOT NULL))
);
CREATE INDEX charges_by_reference ON gateway.charges (reference, created_at);

-- Attempts per Idempotency-Key of `tok_flaky*` charges: the first two are
-- answered 503, later ones go through. A table, so the count survives restarts.
CREATE TABLE gateway.flaky_attempts (
    idempotency_key TEXT        PRIMARY KEY,
    attempts        INTEGER     NOT NULL,
    last_attempt_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
