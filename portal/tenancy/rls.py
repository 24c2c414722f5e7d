"""PostgreSQL row-level security for tenant-owned tables.

Each tenant-owned table gets a policy that admits a row only when its
tenant_id equals the `settle.tenant_id` setting of the connection, or when the
setting is the platform scope ('*'). An unset setting admits nothing, so code
that forgot to enter a scope sees no rows instead of every tenant's rows.

FORCE ROW LEVEL SECURITY makes the policy apply to the table owner too, which
is the role the application connects as. Superusers always bypass RLS, so
production must connect as an ordinary role (docs/running.md).
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

from portal.tenancy.context import PLATFORM_SCOPE_SETTING, RLS_SETTING_NAME

POLICY_NAME = "settle_tenant_isolation"


def _policy_sql(table: str) -> list[str]:
    setting = f"current_setting('{RLS_SETTING_NAME}', true)"
    admits = f"({setting} = '{PLATFORM_SCOPE_SETTING}' OR tenant_id::text = {setting})"
    return [
        f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY',
        f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY',
        f'DROP POLICY IF EXISTS {POLICY_NAME} ON "{table}"',
        f'CREATE POLICY {POLICY_NAME} ON "{table}" USING {admits} WITH CHECK {admits}',
    ]


def _drop_sql(table: str) -> list[str]:
    return [
        f'DROP POLICY IF EXISTS {POLICY_NAME} ON "{table}"',
        f'ALTER TABLE "{table}" NO FORCE ROW LEVEL SECURITY',
        f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY',
    ]


def enable_row_level_security(*tables: str) -> migrations.RunPython:
    """A migration operation that installs the tenant policy on PostgreSQL.

    A no-op on SQLite (the embedded default), where the scoped manager is the
    wall that remains.
    """

    def forwards(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        for table in tables:
            for statement in _policy_sql(table):
                schema_editor.execute(statement)

    def backwards(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        for table in tables:
            for statement in _drop_sql(table):
                schema_editor.execute(statement)

    return migrations.RunPython(forwards, backwards, elidable=False)
