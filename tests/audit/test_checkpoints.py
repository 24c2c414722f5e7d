"""Signed checkpoints on a Celery beat schedule, through a pluggable signer."""

from __future__ import annotations

import pytest

from audit.models import AuditCheckpoint
from audit.services.integrity import chain_for, chain_verify
from audit.signing import HmacSigner, set_signer_factory
from audit.tasks import audit_checkpoint_sign_all
from tests.audit.conftest import fill

pytestmark = pytest.mark.django_db


def test_beat_schedules_the_checkpoint_and_archive_tasks():
    from portal.celery import app

    tasks = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert {"audit.tasks.audit_checkpoint_sign_all", "audit.tasks.audit_archive_run"} <= tasks


def test_the_task_signs_every_chain_that_moved_and_only_those(tenant_a, tenant_b):
    fill(tenant_a, 3)
    fill(tenant_b, 1)
    assert audit_checkpoint_sign_all.delay().get() == 2
    assert audit_checkpoint_sign_all.delay().get() == 0  # only its own checkpoint events since
    fill(tenant_a, 1)
    assert audit_checkpoint_sign_all.delay().get() == 1
    checkpoints = list(AuditCheckpoint.objects.filter(chain=chain_for(tenant_a)).order_by("sequence"))
    assert [c.sequence for c in checkpoints] == [3, 5]
    assert checkpoints[0].algorithm == "Ed25519"  # the local key provider's signing key
    assert chain_verify(chain=chain_for(tenant_a)).checkpoints_checked == 2


def test_a_checkpoint_signed_with_another_key_does_not_verify(tenant_a):
    fill(tenant_a, 2)
    set_signer_factory(lambda: HmacSigner(b"k" * 32, "attacker-key"))
    try:
        audit_checkpoint_sign_all.delay().get()
    finally:
        set_signer_factory(None)
    result = chain_verify(chain=chain_for(tenant_a))
    assert result.problems[0].kind == "bad_signature"
