"""Row-level security test helper: an ordinary role to run SQL as (superusers bypass RLS)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection


def create_probe_role(role: str, *, tables: Iterable[str], privileges: str) -> str:
    """An ordinary (non-superuser, NOLOGIN, no BYPASSRLS) role with `privileges` on `tables`.

    Created inside the test's transaction, so it disappears with the rollback.
    It can also read portal_tenant and use every sequence, as the application role can.
    """
    quoted = ", ".join(f'"{table}"' for table in tables)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            DO $$ BEGIN
                CREATE ROLE {role} NOLOGIN NOSUPERUSER NOBYPASSRLS;
            EXCEPTION WHEN duplicate_object THEN NULL;
            END $$
            """
        )
        cursor.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        cursor.execute(f"GRANT {privileges} ON {quoted} TO {role}")
        cursor.execute(f"GRANT SELECT ON portal_tenant TO {role}")
        cursor.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}")
    return role
