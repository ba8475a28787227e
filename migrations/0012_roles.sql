-- Roles and what each may do (guarantees 3 and 7, issue 9 part 5).
--
--   orders_owner  owns the database, the event log and the bookkeeping tables;
--                 runs these migrations (the `migrate` binary). Member of
--                 `orders`, so later migrations can still alter `read`.
--   orders        the application role every process connects as
--                 (DATABASE_URL): reads and appends to the log, but cannot
--                 update, delete or truncate it, nor alter, drop or disable
--                 its triggers (it owns none of it and has no TRIGGER grant).
--                 It owns the `read` schema: read models are derived data
--                 that replay rebuilds in a shadow schema and swaps in
--                 (DROP TABLE / ALTER TABLE ... SET SCHEMA need ownership).
--   orders_query  the query side: SELECT on `read` only.
--
-- The roles are cluster-wide and created by infra/postgres.sh (or
-- infra/docker/postgres-init.sql) before the first migration.
--
-- For later migrations: a new table in eventstore/command/saga/projector/
-- gateway gets the app role's grants from the default privileges below
-- (append-only, SELECT + INSERT, in eventstore); a new table in `read` must
-- be created as the app role (`SET LOCAL ROLE orders;` first) so that
-- replay can swap it.
DO $$
BEGIN
    IF current_user = 'orders' THEN
        RAISE EXCEPTION 'migrations must run as the owner role (orders_owner), not as the application role orders'
            USING HINT = 'make migrate, or migrate --database-url postgres://orders_owner:...';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'orders')
       OR NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'orders_query') THEN
        RAISE EXCEPTION 'roles orders and orders_query must exist (infra/postgres.sh creates them)';
    END IF;
    IF NOT pg_has_role(current_user, 'orders', 'USAGE') THEN
        RAISE EXCEPTION 'the migrating role % must be a member of orders (GRANT orders TO %)',
            current_user, current_user;
    END IF;
END
$$;

-- The event log: read and append, nothing else.
GRANT USAGE ON SCHEMA eventstore TO orders;
GRANT SELECT, INSERT ON eventstore.events TO orders;
GRANT SELECT, INSERT, UPDATE ON eventstore.streams TO orders;          -- versions move forward
GRANT SELECT, INSERT, DELETE ON eventstore.outbox TO orders;           -- the relay deletes what Kafka acked
GRANT SELECT, INSERT, UPDATE, DELETE ON eventstore.snapshots TO orders; -- a cache
GRANT USAGE ON ALL SEQUENCES IN SCHEMA eventstore TO orders;
ALTER DEFAULT PRIVILEGES IN SCHEMA eventstore GRANT SELECT, INSERT ON TABLES TO orders;
ALTER DEFAULT PRIVILEGES IN SCHEMA eventstore GRANT USAGE ON SEQUENCES TO orders;

-- Bookkeeping (idempotency keys, saga state and dedup, dead letters) and the
-- payment-gateway simulator's ledger: plain DML.
GRANT USAGE ON SCHEMA command, saga, projector, gateway TO orders;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA command, saga, projector, gateway TO orders;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA command, saga, projector, gateway TO orders;
ALTER DEFAULT PRIVILEGES IN SCHEMA command, saga, projector, gateway
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO orders;
ALTER DEFAULT PRIVILEGES IN SCHEMA command, saga, projector, gateway
    GRANT USAGE ON SEQUENCES TO orders;

-- Services check at start-up that every migration is applied.
GRANT SELECT ON _sqlx_migrations TO orders;

-- Read models: owned by the app role (replay swaps them); the query role
-- keeps SELECT on them and on whatever the app role creates there later.
ALTER SCHEMA read OWNER TO orders;
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'read' LOOP
        EXECUTE format('ALTER TABLE read.%I OWNER TO orders', t.tablename);
    END LOOP;
    -- Replay builds into a shadow schema of its own, then moves the tables.
    EXECUTE format('GRANT CREATE ON DATABASE %I TO orders', current_database());
END
$$;
GRANT USAGE ON SCHEMA read TO orders_query;
GRANT SELECT ON ALL TABLES IN SCHEMA read TO orders_query;
ALTER DEFAULT PRIVILEGES FOR ROLE orders IN SCHEMA read GRANT SELECT ON TABLES TO orders_query;
