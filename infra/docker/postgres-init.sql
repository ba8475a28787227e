-- Run once by the postgres:15 image's entrypoint (/docker-entrypoint-initdb.d) when the
-- data volume is empty, as the superuser `postgres`. Same roles and database as
-- infra/postgres.sh (ensure_roles) creates for the no-Docker setup:
--   orders        owner of database `orders`; the migrations run as it; CREATEDB/CREATEROLE
--                 because the test suite creates a database per test.
--   orders_query  the query API's login; migration 0003 grants it USAGE on schema `read`
--                 and SELECT on its tables, nothing else (0003 only creates it NOLOGIN if
--                 it is missing, so it has to exist with a password before the migrations).
-- Keep in step with ensure_roles in infra/postgres.sh.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'orders') THEN
    CREATE ROLE orders LOGIN PASSWORD 'orders' CREATEDB CREATEROLE;
  ELSE
    ALTER ROLE orders LOGIN PASSWORD 'orders' CREATEDB CREATEROLE;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'orders_query') THEN
    CREATE ROLE orders_query LOGIN PASSWORD 'orders_query';
  ELSE
    ALTER ROLE orders_query LOGIN PASSWORD 'orders_query';
  END IF;
END
$$;
SELECT 'CREATE DATABASE orders OWNER orders'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'orders')\gexec
