-- Read models, built by the projector from Kafka (or by replay from the log).
-- Every row keeps the version of the stream it was built from: an event is
-- applied only if it is the next version, so redelivery is harmless.
CREATE SCHEMA IF NOT EXISTS read;

CREATE TABLE read.products (
    product_id  UUID        PRIMARY KEY,
    name        TEXT        NOT NULL,
    price_cents BIGINT      NOT NULL,
    available   BIGINT      NOT NULL,
    reserved    BIGINT      NOT NULL DEFAULT 0,
    sold        BIGINT      NOT NULL DEFAULT 0,
    version     BIGINT      NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE read.orders (
    order_id    UUID        PRIMARY KEY,
    user_id     TEXT        NOT NULL,
    status      TEXT        NOT NULL,
    reason      TEXT,
    lines       JSONB       NOT NULL,
    total_cents BIGINT      NOT NULL,
    version     BIGINT      NOT NULL,
    placed_at   TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

-- Orders per user, newest first; keyset pagination on (placed_at, order_id).
-- An index over order streams; the order details come from read.orders.
CREATE TABLE read.user_orders (
    order_id    UUID        PRIMARY KEY,
    user_id     TEXT        NOT NULL,
    placed_at   TIMESTAMPTZ NOT NULL,
    version     BIGINT      NOT NULL
);
CREATE INDEX user_orders_by_user ON read.user_orders (user_id, placed_at DESC, order_id DESC);

-- The query side connects as a role that can only SELECT the read models.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'orders_query') THEN
        CREATE ROLE orders_query NOLOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA read TO orders_query;
GRANT SELECT ON ALL TABLES IN SCHEMA read TO orders_query;
ALTER DEFAULT PRIVILEGES IN SCHEMA read GRANT SELECT ON TABLES TO orders_query;
