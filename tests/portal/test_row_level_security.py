"""PostgreSQL row-level security: the second wall between clinics.

The test database is used by a superuser, and superusers bypass RLS. So each
test switches, inside its transaction, to an ordinary role (created here,
rolled back with the test) that has the table privileges an application role
would have, and then proves with raw SQL that a transaction bound to tenant A
reads and writes only tenant A's rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import DatabaseError, connection, transaction

from portal.tenancy.context import RLS_SETTING_NAME, platform_scope, tenant_scope
from tests.rls import create_probe_role

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

PROBE_ROLE = "settle_rls_probe"
# Tenant-owned tables: every one of them must carry the policy.
TENANT_TABLES = (
    "billing_patient",
    "billing_statement",
    "billing_ledgerentry",
    "billing_processoraccount",
    "billing_checkout",
    "billing_payment",
    "billing_processorevent",
    "security_membership",
    "security_staffinvitation",
    "security_breakglassgrant",
)


@pytest.fixture
def probe_role(db: None) -> str:
    """An ordinary role with application privileges, rolled back with the test."""
    return create_probe_role(PROBE_ROLE, tables=TENANT_TABLES, privileges="SELECT, INSERT")


@contextmanager
def as_role(role: str) -> Iterator[None]:
    """Run the block as `role` (SET LOCAL ROLE inside a savepoint)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {role}")
        cursor.execute("SELECT current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)")
        user, is_superuser = cursor.fetchone()
        assert user == role and is_superuser is False
        try:
            yield
        finally:
            cursor.execute("RESET ROLE")


def tenant_ids(table: str) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT tenant_id FROM "{table}"')
        return [row[0] for row in cursor.fetchall()]


def set_rls_setting(value: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, %s, false)", [RLS_SETTING_NAME, value])


def test_every_tenant_table_has_forced_row_level_security(db):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = ANY(%s)",
            [list(TENANT_TABLES)],
        )
        flags = {name: (enabled, forced) for name, enabled, forced in cursor.fetchall()}
        cursor.execute("SELECT tablename FROM pg_policies WHERE policyname = 'settle_tenant_isolation'")
        with_policy = {row[0] for row in cursor.fetchall()}
    assert flags == dict.fromkeys(TENANT_TABLES, (True, True))
    assert with_policy >= set(TENANT_TABLES)


def test_every_tenant_owned_model_is_covered(db):
    """A new TenantOwnedModel whose migration forgets the policy fails here."""
    from django.apps import apps

    from portal.tenancy.models import TenantOwnedModel

    tables = {model._meta.db_table for model in apps.get_models() if issubclass(model, TenantOwnedModel)}
    with connection.cursor() as cursor:
        cursor.execute("SELECT relname FROM pg_class WHERE relkind = 'r' AND relrowsecurity AND relforcerowsecurity")
        protected = {row[0] for row in cursor.fetchall()}
    assert set(TENANT_TABLES) <= tables
    assert tables - protected == set()


def test_a_transaction_bound_to_tenant_a_reads_only_tenant_a(clinic_a, clinic_b, probe_role):
    a, b = clinic_a.tenant.pk, clinic_b.tenant.pk
    with platform_scope(), as_role(probe_role):
        assert set(tenant_ids("billing_statement")) == {a, b}, "both clinics have statements"
    with tenant_scope(clinic_a.tenant), as_role(probe_role):
        for table in ("billing_statement", "billing_patient", "billing_ledgerentry", "security_membership"):
            rows = tenant_ids(table)
            assert rows and set(rows) == {a}, table
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM billing_statement WHERE tenant_id = %s", [b])
            assert cursor.fetchone()[0] == 0
            cursor.execute("SELECT count(*) FROM billing_processoraccount")
            assert cursor.fetchone()[0] == 1


def test_with_no_tenant_setting_nothing_is_visible(clinic_a, clinic_b, probe_role):
    set_rls_setting("")
    with as_role(probe_role):
        assert tenant_ids("billing_statement") == []
        assert tenant_ids("billing_patient") == []
    with as_role(probe_role), connection.cursor() as cursor:
        cursor.execute(f"RESET {RLS_SETTING_NAME}")
        cursor.execute("SELECT count(*) FROM billing_statement")
        assert cursor.fetchone()[0] == 0


def test_platform_scope_sees_both_tenants(clinic_a, clinic_b, probe_role):
    with platform_scope(), as_role(probe_role):
        assert set(tenant_ids("billing_patient")) == {clinic_a.tenant.pk, clinic_b.tenant.pk}


def test_a_forged_setting_for_one_tenant_does_not_reveal_another(clinic_a, clinic_b, probe_role):
    set_rls_setting(f"{clinic_a.tenant.pk} OR 1=1")
    with as_role(probe_role):
        assert tenant_ids("billing_statement") == []


INSERT_PATIENT = """
    INSERT INTO billing_patient
        (public_id, tenant_id, account_number, first_name, last_name, date_of_birth, email, phone, created_at)
    VALUES (gen_random_uuid(), %s, %s, 'Rls', 'Probe', '1990-01-01', '', '', now())
"""


def test_inserting_a_row_for_another_tenant_is_refused(clinic_a, clinic_b, probe_role):
    with tenant_scope(clinic_a.tenant), as_role(probe_role):
        with connection.cursor() as cursor:
            cursor.execute(INSERT_PATIENT, [clinic_a.tenant.pk, "RLS-OWN"])  # own tenant: allowed
        refused = pytest.raises(DatabaseError, match="row-level security")
        with refused, transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(INSERT_PATIENT, [clinic_b.tenant.pk, "RLS-OTHER"])
    with platform_scope(), connection.cursor() as cursor:
        cursor.execute("SELECT account_number FROM billing_patient WHERE account_number LIKE 'RLS-%%'")
        assert [row[0] for row in cursor.fetchall()] == ["RLS-OWN"]
