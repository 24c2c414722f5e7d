#!/bin/sh
# Runs once, when the postgres container initialises an empty data directory.
#
# Creates the role Settle connects as and the database it owns. The role is
# NOT a superuser and cannot bypass row-level security: superusers (and
# BYPASSRLS roles) skip every RLS policy, which would silently remove the
# second tenancy wall. The role owns the tables it creates through
# migrations; the policies are installed with FORCE ROW LEVEL SECURITY, so
# they bind the owner too.
set -eu

: "${SETTLE_DB_NAME:=settle}"
: "${SETTLE_DB_USER:=settle}"
: "${SETTLE_DB_PASSWORD:?SETTLE_DB_PASSWORD must be set for the postgres service}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v app_user="$SETTLE_DB_USER" -v app_password="$SETTLE_DB_PASSWORD" -v app_db="$SETTLE_DB_NAME" <<'SQL'
CREATE ROLE :"app_user" LOGIN PASSWORD :'app_password'
    NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION;
CREATE DATABASE :"app_db" OWNER :"app_user";
REVOKE ALL ON DATABASE :"app_db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"app_db" TO :"app_user";
SQL
