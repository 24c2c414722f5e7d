"""Two PostgreSQL roles: the owner that migrates, the runtime role that serves.

The role that owns a table can switch its triggers off (`ALTER TABLE …
DISABLE TRIGGER USER`), drop its row-level security policy or `NO FORCE` it,
with no superuser needed. If the web, the worker and beat connected as the
owner, a compromised process could silence the audit trail's append-only
triggers and rewrite events with recomputed hashes. So:

- the *owner* role owns the database objects and runs `manage.py migrate`
  and `manage.py grant_runtime_role` (deploy time only);
- the *runtime* role owns nothing, is not a superuser, has neither BYPASSRLS
  nor CREATEROLE, and gets exactly the grants below.

Runtime grants (`grant_statements`), re-applied after every migrate:

- ordinary tables: SELECT, INSERT, UPDATE, DELETE;
- append-only tables (those carrying the audit trail's `settle_audit_no_change`
  trigger, audit migration 0005, or the ledger's `settle_ledger_append_only`):
  SELECT and INSERT; plus DELETE on the audit event
  and subject tables only, for retention (`audit.services.archive`), which the
  trigger still limits to archived rows older than 90 days — the runtime role
  cannot switch that trigger off;
- `django_migrations`: SELECT only;
- sequences: USAGE, SELECT; functions (the audit append function among them):
  EXECUTE; the schema: USAGE (no CREATE); the database: CONNECT, TEMPORARY;
- default privileges, so tables a later migration creates are usable before
  the grants are re-applied.

`role_problems` is what production refuses to start with (portal.checks,
portal.wsgi, portal.celery). See docs/decisions/0004-audit-append-only.md.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

# Row triggers that refuse UPDATE and DELETE: the audit trail's (audit
# migration 0005) and the ledger's (billing migration 0002).
APPEND_ONLY_TRIGGERS = ("settle_audit_no_change", "settle_ledger_append_only")
# Retention deletes archived events (and their subject rows) from the hot
# table; the append-only trigger decides which rows may go.
RETENTION_DELETE_TABLES = frozenset({"audit_auditevent", "audit_auditeventsubject"})
READ_ONLY_TABLES = frozenset({"django_migrations"})
FULL_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")

_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class Cursor(Protocol):
    def execute(self, sql: str, params: Any = ..., /) -> Any: ...
    def fetchall(self) -> Any: ...
    def fetchone(self) -> Any: ...


class RoleError(ValueError):
    """A role name that is not a plain lower-case identifier, or a role that does not exist."""


def quote_role(role: str) -> str:
    """The role name as an SQL identifier; only plain lower-case names are accepted."""
    if not _ROLE_NAME.match(role):
        raise RoleError(f"{role!r} is not a plain role name (lower-case letters, digits, underscores)")
    return f'"{role}"'


def append_only_tables(cursor: Cursor) -> set[str]:
    """Tables of the current schema that carry an append-only trigger."""
    cursor.execute(
        "SELECT DISTINCT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE t.tgname = ANY(%s) AND c.relnamespace = current_schema()::regnamespace",
        [list(APPEND_ONLY_TRIGGERS)],
    )
    return {row[0] for row in cursor.fetchall()}


def table_privileges(table: str, append_only: set[str]) -> tuple[str, ...]:
    """What the runtime role may do on `table`."""
    if table in READ_ONLY_TABLES:
        return ("SELECT",)
    if table in append_only:
        return ("SELECT", "INSERT", "DELETE") if table in RETENTION_DELETE_TABLES else ("SELECT", "INSERT")
    return FULL_PRIVILEGES


def grant_statements(cursor: Cursor, *, role: str) -> list[str]:
    """The statements that give `role` the runtime grants, run as the owner of the objects.

    Idempotent: every table's grants are revoked and given again, so a
    table that became append-only since the last run loses UPDATE.
    """
    quoted = quote_role(role)
    cursor.execute("SELECT current_database(), current_schema()")
    database, schema = cursor.fetchone()
    cursor.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tableowner = current_user "
        "ORDER BY tablename"
    )
    tables = [row[0] for row in cursor.fetchall()]
    append_only = append_only_tables(cursor)
    db, sch = _quote_identifier(database), _quote_identifier(schema)
    statements = [
        f"GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {quoted}",
        f"REVOKE CREATE ON SCHEMA {sch} FROM {quoted}",
        f"GRANT USAGE ON SCHEMA {sch} TO {quoted}",
    ]
    for table in tables:
        name = f"{sch}.{_quote_identifier(table)}"
        statements.append(f"REVOKE ALL ON TABLE {name} FROM {quoted}")
        statements.append(f"GRANT {', '.join(table_privileges(table, append_only))} ON TABLE {name} TO {quoted}")
    statements += [
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {sch} TO {quoted}",
        f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {sch} TO {quoted}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {sch} GRANT {', '.join(FULL_PRIVILEGES)} ON TABLES TO {quoted}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {sch} GRANT USAGE, SELECT ON SEQUENCES TO {quoted}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {sch} GRANT EXECUTE ON FUNCTIONS TO {quoted}",
    ]
    return statements


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def role_problems(cursor: Cursor, role: str | None = None) -> list[str]:
    """Why `role` (default: the connection's own role) must not serve the application; [] when it may.

    A superuser or a BYPASSRLS role skips every row-level security policy;
    a CREATEROLE role can make itself a member of the owner; a role that
    owns a table, or is a member of its owner, can switch the audit trail's
    append-only triggers off and drop or unforce the tenant policies.
    """
    cursor.execute(
        "SELECT rolname, rolsuper, rolbypassrls, rolcreaterole FROM pg_roles WHERE rolname = coalesce(%s, current_user)",
        [role],
    )
    found = cursor.fetchone()
    if found is None:
        raise RoleError(f"role {role!r} does not exist")
    name, superuser, bypassrls, createrole = found
    problems = []
    if superuser:
        problems.append(f"the database role {name!r} is a superuser (it bypasses row-level security and triggers)")
    if bypassrls:
        problems.append(f"the database role {name!r} has BYPASSRLS (it skips the tenant policies)")
    if createrole:
        problems.append(f"the database role {name!r} has CREATEROLE (it could join the owner role)")
    cursor.execute(
        "SELECT c.relname FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace "
        "AND c.relkind IN ('r', 'p') AND pg_has_role(%s, c.relowner, 'USAGE') ORDER BY c.relname",
        [name],
    )
    owned = [row[0] for row in cursor.fetchall()]
    if owned:
        audit = [table for table in owned if table.startswith("audit_")]
        shown = ", ".join((audit or owned)[:4])
        problems.append(
            f"the database role {name!r} owns {len(owned)} tables ({shown}, …): it could disable the audit "
            "trail's append-only triggers; connect as a runtime role that owns nothing (docs/running.md)"
        )
    return problems


# --------------------------------------------------------------------------------------
# Production refuses to start as an unsafe role
# --------------------------------------------------------------------------------------


def production_role_problems() -> list[str]:
    """role_problems() for the default database, in production on PostgreSQL; [] otherwise."""
    from django.conf import settings
    from django.db import connection

    if not getattr(settings, "PRODUCTION", False) or connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        return role_problems(cursor)


def check_runtime_role(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[Any]:
    """System check (`manage.py check --deploy`): the production database role is safe to serve as.

    A database that cannot be reached is an error only when the check was
    asked to use it (`check --deploy --database default`, as the deploy
    pipeline runs it); a bare `check --deploy` on a build machine skips it.
    The start-up guard (refuse_unsafe_runtime_role) always fails closed.
    """
    from django.conf import settings
    from django.core.checks import Error
    from django.db import DatabaseError, OperationalError, connection

    hint = "Run web, worker and beat as the runtime role (manage.py grant_runtime_role); see docs/running.md."
    try:
        if getattr(settings, "PRODUCTION", False) and not databases:
            connection.ensure_connection()
    except OperationalError:
        return []
    try:
        problems = production_role_problems()
    except (DatabaseError, RoleError) as exc:
        return [Error(f"could not check the database role: {exc}", hint=hint, id="settle.E101")]
    return [Error(problem, hint=hint, id="settle.E100") for problem in problems]


def refuse_unsafe_runtime_role() -> None:
    """Raise ImproperlyConfigured when production would serve as an unsafe role (startup guard).

    Fails closed: a database that cannot be asked stops the start too. The
    connection is closed afterwards, so no process forks with it open.
    """
    from django.core.exceptions import ImproperlyConfigured
    from django.db import DatabaseError, connection

    try:
        problems = production_role_problems()
    except (DatabaseError, RoleError) as exc:
        raise ImproperlyConfigured(f"could not check the database role: {exc}") from exc
    finally:
        if not connection.in_atomic_block:  # at start-up there is none; a test's is left alone
            connection.close()
    if problems:
        raise ImproperlyConfigured("refusing to start: " + "; ".join(problems))
