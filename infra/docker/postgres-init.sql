-- Run once by the postgres:15 image's entrypoint (/docker-entrypoint-initdb.d) when the
-- data volume is empty, as the superuser `postgres`. Same roles and database as
-- infra/postgres.sh (ensure_roles) creates for the no-Docker setup:
--   orders_owner  owner of database `orders`; the `migrate` service runs the migrations
--                 as it; CREATEDB because the test suite creates a database per test.
--   orders        the services' login (DATABASE_URL): no CREATEDB/CREATEROLE; migration
--                 0012 grants it read + append on the log, DML on the bookkeeping tables,
--                 and gives it the read models (replay swaps them).
--   orders_query  the query API's login: USAGE on schema `read` and SELECT on its tables.
-- Keep in step with ensure_roles in infra/postgres.sh (infra/compose-check.sh compares them).
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'orders_owner') THEN
    CREATE ROLE orders_owner LOGIN PASSWORD 'orders_owner';
  END IF;
  ALTER ROLE orders_owner LOGIN PASSWORD 'orders_owner' CREATEDB NOCREATEROLE NOSUPERUSER;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'orders') THEN
    CREATE ROLE orders LOGIN PASSWORD 'orders';
  END IF;
  -- The application role creates no databases or roles (older layouts gave
  -- it CREATEDB CREATEROLE and made it the owner of everything).
  ALTER ROLE orders LOGIN PASSWORD 'orders' NOCREATEDB NOCREATEROLE NOSUPERUSER NOBYPASSRLS NOREPLICATION;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'orders_query') THEN
    CREATE ROLE orders_query LOGIN PASSWORD 'orders_query';
  END IF;
  ALTER ROLE orders_query LOGIN PASSWORD 'orders_query' NOCREATEDB NOCREATEROLE NOSUPERUSER NOBYPASSRLS NOREPLICATION;
END
$$;
-- The owner may act as the app role: later migrations can alter the read
-- models, which the app role owns (migrations/0012_roles.sql).
GRANT orders TO orders_owner;
SELECT 'CREATE DATABASE orders OWNER orders_owner'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'orders')\gexec
