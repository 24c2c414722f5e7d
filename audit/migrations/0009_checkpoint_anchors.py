"""Checkpoint anchors: which signed checkpoints have been copied outside the database.

The table is bookkeeping (the evidence is in the anchor store), under the
same row-level security as the checkpoints: a row is visible in its chain's
tenant scope or the platform scope (see 0006).
"""

from __future__ import annotations

from typing import Any

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

from portal.tenancy.context import PLATFORM_SCOPE_SETTING, RLS_SETTING_NAME
from portal.tenancy.rls import POLICY_NAME

TABLE = "audit_auditcheckpointanchor"


def _policy(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    # Identifiers and constants of this module only; no value from outside reaches the SQL.
    setting = f"current_setting('{RLS_SETTING_NAME}', true)"
    chain_of_row = f'SELECT 1 FROM "audit_auditchain" c WHERE c.id = "{TABLE}".chain_id'  # noqa: S608  # nosec B608: module constants only
    admits = f"({setting} = '{PLATFORM_SCOPE_SETTING}' OR EXISTS ({chain_of_row} AND c.tenant_id::text = {setting}))"
    for statement in (
        f'ALTER TABLE "{TABLE}" ENABLE ROW LEVEL SECURITY',
        f'ALTER TABLE "{TABLE}" FORCE ROW LEVEL SECURITY',
        f'DROP POLICY IF EXISTS {POLICY_NAME} ON "{TABLE}"',
        f'CREATE POLICY {POLICY_NAME} ON "{TABLE}" USING {admits} WITH CHECK {admits}',
    ):
        schema_editor.execute(statement)


def _no_policy(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f'DROP POLICY IF EXISTS {POLICY_NAME} ON "{TABLE}"')


class Migration(migrations.Migration):
    dependencies = [("audit", "0008_details_canonical_json")]

    operations = [
        migrations.CreateModel(
            name="AuditCheckpointAnchor",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("store", models.CharField(max_length=16)),
                ("location", models.CharField(max_length=1024)),
                ("anchored_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "chain",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="+", to="audit.auditchain"
                    ),
                ),
                (
                    "checkpoint",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.PROTECT, related_name="anchor", to="audit.auditcheckpoint"
                    ),
                ),
            ],
        ),
        migrations.RunPython(_policy, _no_policy, elidable=False),
    ]
