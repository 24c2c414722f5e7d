#!/bin/sh
# Runs once, when the postgres container initialises an empty data directory.
#
# Creates Settle's two roles and the database (docs/running.md, "Two database
# roles"; portal/dbroles.py):
#
# - the OWNER (SETTLE_DB_OWNER, default settle_owner) owns the database and,
#   through `manage.py migrate`, every table. Only the compose `migrate`
#   service connects as it; its password is a secret file that no other
#   application container gets.
# - the RUNTIME role (SETTLE_DB_USER, default settle) is what web, worker and
#   beat connect as (DATABASE_URL). It owns nothing, so it cannot switch the
#   audit trail's append-only triggers off or drop the tenant policies;
#   `manage.py grant_runtime_role` (run by `migrate` after the migrations)
#   gives it exactly the privileges it needs.
#
# Neither is a superuser or can bypass row-level security: superusers (and
# BYPASSRLS roles) skip every RLS policy, which would silently remove the
# second tenancy wall. Production refuses to start as a role that is one, or
# that owns the tables.
set -eu

: "${SETTLE_DB_NAME:=settle}"
: "${SETTLE_DB_USER:=settle}"
: "${SETTLE_DB_OWNER:=settle_owner}"
: "${SETTLE_DB_PASSWORD:?SETTLE_DB_PASSWORD must be set for the postgres service}"
: "${SETTLE_DB_OWNER_PASSWORD_FILE:?SETTLE_DB_OWNER_PASSWORD_FILE must name the owner password secret}"
owner_password="$(cat "$SETTLE_DB_OWNER_PASSWORD_FILE")"
[ -n "$owner_password" ] || { echo "the owner password file is empty" >&2; exit 1; }
[ "$SETTLE_DB_USER" != "$SETTLE_DB_OWNER" ] || { echo "the runtime role must not be the owner" >&2; exit 1; }

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v app_user="$SETTLE_DB_USER" -v app_password="$SETTLE_DB_PASSWORD" \
     -v owner_user="$SETTLE_DB_OWNER" -v owner_password="$owner_password" -v app_db="$SETTLE_DB_NAME" <<'SQL'
CREATE ROLE :"owner_user" LOGIN PASSWORD :'owner_password'
    NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION;
CREATE ROLE :"app_user" LOGIN PASSWORD :'app_password'
    NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION;
CREATE DATABASE :"app_db" OWNER :"owner_user";
REVOKE ALL ON DATABASE :"app_db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"app_db" TO :"owner_user", :"app_user";
\connect :"app_db"
-- Only the owner creates objects (PostgreSQL 15 already withholds CREATE on
-- the public schema from PUBLIC; this keeps older servers the same).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"app_user";
SQL
