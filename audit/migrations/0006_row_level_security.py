"""PostgreSQL row-level security on the audit chain tables.

Exports, export links and verifications got the tenant policy in 0002. This
adds it to the chain itself:

- audit_auditchain, audit_auditevent, audit_auditeventsubject carry tenant_id:
  the project's policy (portal.tenancy.rls). A platform-chain row has
  tenant_id NULL; `NULL::text = setting` is never true, so such rows are
  visible and writable only in the platform scope ('*'), never in a tenant's.
- audit_auditcheckpoint and audit_auditarchivesegment have no tenant_id; they
  belong to a chain, so their policy admits a row when its chain's tenant is
  the scope's tenant (or in the platform scope). The chain lookup is written
  out rather than left to the chain table's own policy, so the rule reads the
  same whoever evaluates it.

The append-only triggers (0005) run as the invoking role, so their look-ups
see only rows in scope, which is what the callers (retention in the platform
scope, or a tenant's own scope) need.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

from portal.tenancy.context import PLATFORM_SCOPE_SETTING, RLS_SETTING_NAME
from portal.tenancy.rls import POLICY_NAME, enable_row_level_security

CHAIN_OWNED_TABLES = ("audit_auditcheckpoint", "audit_auditarchivesegment")


def _chain_policy_sql(table: str) -> list[str]:
    # Identifiers and constants of this module only; no value from outside reaches the SQL.
    setting = f"current_setting('{RLS_SETTING_NAME}', true)"
    chain_of_row = f'SELECT 1 FROM "audit_auditchain" c WHERE c.id = "{table}".chain_id'  # noqa: S608  # nosec B608: module constants only
    admits = f"({setting} = '{PLATFORM_SCOPE_SETTING}' OR EXISTS ({chain_of_row} AND c.tenant_id::text = {setting}))"
    return [
        f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY',
        f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY',
        f'DROP POLICY IF EXISTS {POLICY_NAME} ON "{table}"',
        f'CREATE POLICY {POLICY_NAME} ON "{table}" USING {admits} WITH CHECK {admits}',
    ]


def _chain_policy_drop_sql(table: str) -> list[str]:
    return [
        f'DROP POLICY IF EXISTS {POLICY_NAME} ON "{table}"',
        f'ALTER TABLE "{table}" NO FORCE ROW LEVEL SECURITY',
        f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY',
    ]


def chain_owned_forwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in CHAIN_OWNED_TABLES:
        for statement in _chain_policy_sql(table):
            schema_editor.execute(statement)


def chain_owned_backwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in CHAIN_OWNED_TABLES:
        for statement in _chain_policy_drop_sql(table):
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("audit", "0005_append_only_triggers")]

    operations = [
        enable_row_level_security("audit_auditchain", "audit_auditevent", "audit_auditeventsubject"),
        migrations.RunPython(chain_owned_forwards, chain_owned_backwards, elidable=False),
    ]
