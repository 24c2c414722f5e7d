"""'Rotate keys' answers at once: the redirect to the progress page comes before the rotation ends.

With eager Celery tasks (make run without Redis) the re-encryption runs in a
background thread started on commit (security.rotation_background). The
rotation is held at a gate until the response is in hand, so the test shows
the order of events rather than timing it.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.test import override_settings
from django.urls import reverse

from portal.tenancy.context import tenant_scope
from security import rotation_background, tasks
from security.crypto.models import KeyPurpose, KeyRotation, RotationStatus
from security.crypto.rotation import ROTATABLE_PURPOSES
from security.models import Role
from security.rotation_background import rotation_threads_join

pytestmark = pytest.mark.django_db(transaction=True)

ADMIN = Role.CLINIC_ADMIN.value


@pytest.fixture
def gated_rotation(monkeypatch):
    """Rotations wait at a gate before re-encrypting; returns (gate, names of threads that ran them)."""
    gate = threading.Event()
    ran_in: list[str] = []
    real = tasks.data_key_rotate

    def held(**kwargs):
        ran_in.append(threading.current_thread().name)
        assert gate.wait(20), "the test never opened the gate"
        return real(**kwargs)

    monkeypatch.setattr(tasks, "data_key_rotate", held)
    with override_settings(SETTLE_ACTIVE_KEY_CACHE_SECONDS=0):
        yield gate, ran_in
    gate.set()
    assert rotation_threads_join(30), "a background rotation is still running"


def _statuses(tenant) -> dict[str, str]:
    with tenant_scope(tenant):
        return dict(KeyRotation.objects.filter(tenant=tenant).values_list("purpose", "status"))


def _wait_finished(tenant, purposes, timeout=30.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = _statuses(tenant)
        if sorted(statuses) == sorted(purposes) and set(statuses.values()) == {RotationStatus.FINISHED}:
            return statuses
        time.sleep(0.1)
    return _statuses(tenant)


def test_rotating_all_keys_redirects_to_the_progress_page_before_the_rotation_finishes(clinic_a, gated_rotation):
    gate, ran_in = gated_rotation
    client = clinic_a.client_as(ADMIN)

    response = client.post(reverse("keys:rotate"), {"purpose": "all"})

    assert response.status_code == 302 and response["Location"] == reverse("keys:keys")
    statuses = _statuses(clinic_a.tenant)
    assert sorted(statuses) == sorted(ROTATABLE_PURPOSES)
    assert set(statuses.values()) == {RotationStatus.RUNNING}, "answered before re-encrypting"
    progress = client.get(response["Location"]).content.decode()
    assert "Key rotation started" in progress and 'http-equiv="refresh"' in progress and "Running" in progress

    gate.set()
    assert set(_wait_finished(clinic_a.tenant, ROTATABLE_PURPOSES).values()) == {RotationStatus.FINISHED}
    assert ran_in and all(name.startswith("key-rotation-") for name in ran_in), ran_in


def test_rotating_one_purpose_redirects_to_that_rotations_progress_page(clinic_a, gated_rotation):
    gate, _ = gated_rotation
    client = clinic_a.client_as(ADMIN)

    response = client.post(reverse("keys:rotate"), {"purpose": KeyPurpose.PHI})

    with tenant_scope(clinic_a.tenant):
        rotation = KeyRotation.objects.get(tenant=clinic_a.tenant)
    assert response.status_code == 302
    assert response["Location"] == reverse("keys:rotation", kwargs={"rotation_id": rotation.public_id})
    assert rotation.status == RotationStatus.RUNNING
    page = client.get(response["Location"]).content.decode()
    assert 'http-equiv="refresh"' in page and "Key rotation started" in page

    gate.set()
    assert _wait_finished(clinic_a.tenant, [KeyPurpose.PHI]) == {KeyPurpose.PHI: RotationStatus.FINISHED}


def test_under_a_real_worker_the_task_is_only_queued(clinic_a, monkeypatch):
    queued: list[dict[str, object]] = []
    monkeypatch.setattr(tasks.data_key_rotate_task, "delay", lambda **kwargs: queued.append(kwargs))
    monkeypatch.setattr(rotation_background, "_eager", lambda: False)

    response = clinic_a.client_as(ADMIN).post(reverse("keys:rotate"), {"purpose": KeyPurpose.PHI})

    assert response.status_code == 302
    assert [q["purpose"] for q in queued] == [KeyPurpose.PHI]
    assert _statuses(clinic_a.tenant) == {KeyPurpose.PHI: RotationStatus.RUNNING}
