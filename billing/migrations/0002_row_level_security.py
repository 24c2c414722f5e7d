"""Row-level security on billing tables, and an append-only ledger.

On PostgreSQL the ledger refuses UPDATE and DELETE of a row outright, whatever
the application does: corrections are new entries. TRUNCATE is left to
privileges (it fires no row trigger): the test suite's database flush needs it,
and a role that may TRUNCATE may also drop the trigger.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

from portal.tenancy.rls import enable_row_level_security

BILLING_TABLES = (
    "billing_patient",
    "billing_statement",
    "billing_ledgerentry",
    "billing_processoraccount",
    "billing_checkout",
    "billing_payment",
    "billing_processorevent",
)

LEDGER_TRIGGER = """
CREATE OR REPLACE FUNCTION settle_refuse_ledger_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'billing_ledgerentry is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS settle_ledger_append_only ON billing_ledgerentry;
CREATE TRIGGER settle_ledger_append_only
    BEFORE UPDATE OR DELETE ON billing_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION settle_refuse_ledger_change();
"""

DROP_LEDGER_TRIGGER = """
DROP TRIGGER IF EXISTS settle_ledger_append_only ON billing_ledgerentry;
DROP FUNCTION IF EXISTS settle_refuse_ledger_change();
"""


def install_ledger_trigger(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(LEDGER_TRIGGER, params=None)


def drop_ledger_trigger(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_LEDGER_TRIGGER)


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [
        enable_row_level_security(*BILLING_TABLES),
        migrations.RunPython(install_ledger_trigger, drop_ledger_trigger, elidable=False),
    ]
