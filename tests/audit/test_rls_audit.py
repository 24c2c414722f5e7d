"""PostgreSQL row-level security on the audit tables, proven as an ordinary (non-superuser) role.

The tests connect as a superuser, which bypasses RLS, so each test switches to
a role with only application privileges (created inside the test's
transaction, gone with its rollback), as tests/portal/test_row_level_security.py
does for the billing tables. The real recorder and the checkpoint task run
under that role: what works here works for the production role.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.exceptions import ObjectDoesNotExist
from django.db import DatabaseError, connection, transaction

from audit.models import AuditChain, AuditEvent
from audit.recorder import audit_record
from audit.services.integrity import chain_for, chain_verify, checkpoint_sign, checkpoint_sign_all
from portal.tenancy.context import RLS_SETTING_NAME, platform_scope, tenant_scope
from tests.audit.conftest import fill
from tests.rls import create_probe_role

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

PROBE_ROLE = "settle_audit_rls_probe"
AUDIT_TABLES = (
    "audit_auditchain",
    "audit_auditevent",
    "audit_auditeventsubject",
    "audit_auditcheckpoint",
    "audit_auditarchivesegment",
    "audit_auditexport",
    "audit_auditexportlink",
    "audit_auditverification",
    "audit_auditcheckpointanchor",
)


@pytest.fixture
def probe_role(db: None) -> str:
    """An ordinary role with application privileges, rolled back with the test."""
    # UPDATE and DELETE too, so it is the triggers, not missing grants, that refuse changes.
    return create_probe_role(PROBE_ROLE, tables=AUDIT_TABLES, privileges="SELECT, INSERT, UPDATE, DELETE")


@contextmanager
def as_role(role: str) -> Iterator[None]:
    """Run the block as `role` for the rest of the test's transaction (rolled back with it)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SET ROLE {role}")
        cursor.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        assert cursor.fetchone() == (False, False)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")


def rows(sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return list(cursor.fetchall())


def visible_tenants(table: str) -> set[object]:
    return {row[0] for row in rows(f'SELECT DISTINCT tenant_id FROM "{table}"')}


def visible_chains(table: str) -> set[object]:
    return {row[0] for row in rows(f'SELECT DISTINCT chain_id FROM "{table}"')}


@pytest.fixture
def three_chains(tenant_a, tenant_b):
    """Events, subjects and a checkpoint on the chains of A, B and the platform (written as the owner)."""
    for tenant in (tenant_a, tenant_b, None):
        fill(tenant, 3)
        checkpoint_sign(chain=chain_for(tenant))
    return {name: chain_for(t) for name, t in (("a", tenant_a), ("b", tenant_b), ("platform", None))}


def test_every_audit_table_has_forced_row_level_security_and_the_policy(db):
    flags = {
        name: (enabled, forced)
        for name, enabled, forced in rows(
            "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = ANY(%s)",
            [list(AUDIT_TABLES)],
        )
    }
    assert flags == dict.fromkeys(AUDIT_TABLES, (True, True))
    with_policy = {
        row[0] for row in rows("SELECT tablename FROM pg_policies WHERE policyname = 'settle_tenant_isolation'")
    }
    assert with_policy >= set(AUDIT_TABLES)


def test_a_tenant_scope_sees_only_its_own_chain(three_chains, tenant_a, probe_role):
    a = three_chains["a"]
    with tenant_scope(tenant_a), as_role(probe_role):
        for table in ("audit_auditchain", "audit_auditevent", "audit_auditeventsubject"):
            assert visible_tenants(table) == {tenant_a.pk}, table
        assert visible_chains("audit_auditcheckpoint") == {a.pk}
        assert visible_chains("audit_auditcheckpointanchor") == {a.pk}
        assert visible_chains("audit_auditevent") == {a.pk}
        # The platform chain (tenant NULL) is not part of any tenant's scope.
        assert rows("SELECT count(*) FROM audit_auditevent WHERE tenant_id IS NULL") == [(0,)]
        assert rows("SELECT count(*) FROM audit_auditchain WHERE key = 'platform'") == [(0,)]


def test_the_platform_scope_sees_every_chain_including_the_platform_one(three_chains, probe_role):
    with platform_scope(), as_role(probe_role):
        assert visible_chains("audit_auditevent") == {c.pk for c in three_chains.values()}
        assert visible_chains("audit_auditcheckpoint") == {c.pk for c in three_chains.values()}
        assert visible_chains("audit_auditcheckpointanchor") == {c.pk for c in three_chains.values()}
        assert None in visible_tenants("audit_auditevent")


def test_no_scope_and_a_forged_setting_see_nothing(three_chains, tenant_a, probe_role):
    for value in ("", f"{tenant_a.pk} OR 1=1", "NULL"):
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config(%s, %s, false)", [RLS_SETTING_NAME, value])
        with as_role(probe_role):
            for table in AUDIT_TABLES:
                assert rows(f'SELECT count(*) FROM "{table}"') == [(0,)], (value, table)


def test_the_recorder_writes_in_its_own_scope_and_nowhere_else(three_chains, tenant_a, tenant_b, probe_role):
    before = {name: chain.last_sequence for name, chain in three_chains.items()}
    with tenant_scope(tenant_a), as_role(probe_role):
        event = audit_record(action="receipt.viewed", tenant=tenant_a, target_type="receipt", target_id="R-rls")
        assert event.sequence == before["a"] + 1
        for other in (tenant_b, None):
            with pytest.raises((DatabaseError, ObjectDoesNotExist)), transaction.atomic():
                audit_record(action="receipt.viewed", tenant=other, target_type="receipt", target_id="R-leak")
    assert not AuditEvent.objects.filter(target_id="R-leak").exists()
    assert AuditEvent.objects.filter(target_id="R-rls", tenant=tenant_a).count() == 1


def test_a_tenant_scope_cannot_insert_a_platform_row(three_chains, tenant_a, probe_role):
    platform = three_chains["platform"]
    with tenant_scope(tenant_a), as_role(probe_role):
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            rows(
                "INSERT INTO audit_auditcheckpoint (chain_id, sequence, head_hash, signed_at, key_id, algorithm, "
                "signature) VALUES (%s, 999, 'x', now(), 'k', 'a', 's') RETURNING id",
                [platform.pk],
            )


def test_append_only_triggers_still_refuse_changes_under_rls(three_chains, tenant_a, probe_role):
    with tenant_scope(tenant_a), as_role(probe_role):
        for sql in (
            "UPDATE audit_auditevent SET target_id = 'X'",
            "DELETE FROM audit_auditevent",
            "UPDATE audit_auditcheckpoint SET signature = 'x'",
        ):
            with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
                rows(sql + " RETURNING 1")


def test_the_beat_task_signs_every_chain_from_no_scope_as_the_application_role(three_chains, tenant_a, probe_role):
    for tenant in (tenant_a, None):
        fill(tenant, 2)
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, '', false)", [RLS_SETTING_NAME])
    with as_role(probe_role):
        assert checkpoint_sign_all() == 2  # A and the platform moved; B did not
        with platform_scope():
            assert AuditChain.objects.count() == 3
        for chain in (three_chains["a"], three_chains["platform"]):
            result = chain_verify(chain=chain)
            assert result.ok and result.checkpoints_checked == 2, result.summary()


@pytest.fixture
def app_role(probe_role: str) -> str:
    """The probe role with what the application role has on every table (not just the audit ones)."""
    with connection.cursor() as cursor:
        cursor.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {probe_role}")
    return probe_role


def test_a_failed_sign_in_on_a_clinic_host_is_recorded_as_the_application_role(clinic_a, app_role):
    from tests.conftest import password_step, tenant_client

    user = clinic_a.user("front_desk")
    with as_role(app_role):
        response = password_step(tenant_client(clinic_a.tenant), user.email, password="not-the-password")
    assert response.status_code == 400  # the form again, with the error
    assert AuditEvent.objects.filter(action="auth.login_failed", tenant=clinic_a.tenant).count() == 1


def test_a_failed_sign_in_on_the_platform_host_is_recorded_as_the_application_role(clinic_a, app_role):
    from tests.conftest import password_step, platform_client

    user = clinic_a.user("front_desk")
    with as_role(app_role):
        response = password_step(platform_client(), user.email, password="not-the-password")
    assert response.status_code == 400  # the form again, with the error
    assert AuditEvent.objects.filter(action="auth.login_failed", tenant=None).count() == 1


def test_the_archive_runs_as_the_application_role_from_no_scope(tenant_a, archive_settings, probe_role):
    """Retention deletes rows only through the triggers' exception, each chain in its own scope."""
    from datetime import UTC, datetime

    import time_machine

    from audit.models import AuditArchiveSegment
    from audit.services.archive import archive_due

    with time_machine.travel(datetime(2025, 1, 10, 12, tzinfo=UTC), tick=True):
        fill(tenant_a, 4)
    fill(None, 2)  # a platform chain with only recent events
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, '', false)", [RLS_SETTING_NAME])
    with as_role(probe_role):
        assert archive_due(client=archive_settings) == 1
        with platform_scope():
            assert AuditArchiveSegment.objects.count() == 1
            assert not AuditEvent.objects.filter(tenant=tenant_a, sequence__lte=4).exists()
            assert chain_verify(chain=chain_for(tenant_a)).ok
