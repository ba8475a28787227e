-- Read model of the payments (stream type "payments"), one row per payment
-- stream, built by the projector like the others (next-version rule on
-- `version`). The query API joins it to read.orders on order_id to show each
-- order's payment state. An order has at most one payment: its stream id is
-- derived from the order id (domain::payment::payment_id_for).
CREATE TABLE read.payments (
    payment_id     UUID        PRIMARY KEY,
    order_id       UUID        NOT NULL UNIQUE,
    status         TEXT        NOT NULL
        CHECK (status IN ('REQUESTED', 'CAPTURED', 'DECLINED', 'REFUNDED', 'FAILED')),
    amount_cents   BIGINT      NOT NULL,
    currency       TEXT        NOT NULL,
    charge_id      TEXT,       -- the provider's charge, once captured
    refund_id      TEXT,       -- the provider's refund, once refunded
    decline_code   TEXT,       -- the provider's decline code, once declined
    failure_reason TEXT,       -- why no capture happened before the deadline
    version        BIGINT      NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);

-- The query side reads it with its SELECT-only role (0003's default
-- privileges cover tables created by the owner; this states it explicitly).
GRANT SELECT ON read.payments TO orders_query;
