"""The key console (/staff/keys/): who may see it and rotate, tenancy, bad input, a rotation end to end."""

from __future__ import annotations

import re
import uuid

import pytest
from django.test import override_settings
from django.urls import reverse

from audit.models import AuditEvent
from portal.tenancy.context import tenant_scope
from security.crypto.models import DataKey, DataKeyState, KeyPurpose, KeyRotation, RotationStatus
from security.crypto.rotation import ROTATABLE_PURPOSES, data_key_rotation_start
from security.models import Role

pytestmark = pytest.mark.django_db

ADMIN = Role.CLINIC_ADMIN.value
OTHER_ROLES = [role.value for role in Role if role != Role.CLINIC_ADMIN]


@pytest.fixture(autouse=True)
def _no_active_version_wait() -> object:
    # One process: nobody else can hold the old active version, so an eager rotation finishes at once.
    # Inline on commit, not in a background thread: the thread's own connection could not see
    # this test's uncommitted data (test_key_rotation_background.py covers the thread).
    with override_settings(SETTLE_ACTIVE_KEY_CACHE_SECONDS=0, SETTLE_ROTATION_EAGER_THREAD=False):
        yield


def _rotations(tenant) -> list[KeyRotation]:
    with tenant_scope(tenant):
        return list(KeyRotation.objects.filter(tenant=tenant).order_by("purpose"))


def _key_states(tenant) -> dict[tuple[str, int], str]:
    with tenant_scope(tenant):
        return {(k.purpose, k.version): k.state for k in DataKey.objects.filter(tenant=tenant)}


def test_clinic_admin_sees_keys_without_key_material(clinic_a):
    response = clinic_a.client_as(ADMIN).get(reverse("keys:keys"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Data keys" in body and "Rotate keys" in body
    assert "PHI fields" in body and "v1" in body and "Active" in body
    with tenant_scope(clinic_a.tenant):
        wrapped = [bytes(k.wrapped_key) for k in DataKey.objects.filter(tenant=clinic_a.tenant)]
    assert wrapped
    for blob in wrapped:
        assert blob.hex() not in body
        assert blob.decode("latin-1") not in body


@pytest.mark.parametrize("role", OTHER_ROLES)
def test_other_roles_get_403(clinic_a, role):
    client = clinic_a.client_as(role)
    assert client.get(reverse("keys:keys")).status_code == 403
    assert client.post(reverse("keys:rotate"), {"purpose": "all"}).status_code == 403
    assert _rotations(clinic_a.tenant) == []


def test_anonymous_is_sent_to_login_and_outsider_refused(clinic_a, outsider):
    response = clinic_a.client().get(reverse("keys:keys"))
    assert response.status_code == 302 and "login" in response["Location"]
    assert clinic_a.client().post(reverse("keys:rotate")).status_code == 302
    assert clinic_a.client(outsider).get(reverse("keys:keys")).status_code == 403
    assert clinic_a.client(outsider).post(reverse("keys:rotate")).status_code == 403
    assert _rotations(clinic_a.tenant) == []


def test_get_on_rotate_is_not_allowed(clinic_a):
    assert clinic_a.client_as(ADMIN).get(reverse("keys:rotate")).status_code == 405
    assert _rotations(clinic_a.tenant) == []


def test_rotation_runs_to_the_end_and_the_page_shows_version_2_and_100_percent(
    clinic_a, clinic_b, django_capture_on_commit_callbacks
):
    client = clinic_a.client_as(ADMIN)
    before_b = _key_states(clinic_b.tenant)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(reverse("keys:rotate"), {"purpose": "all"})
    assert response.status_code == 302 and response["Location"] == reverse("keys:keys")
    assert callbacks, "the rotation is queued on commit"

    rotations = _rotations(clinic_a.tenant)
    assert sorted(r.purpose for r in rotations) == sorted(ROTATABLE_PURPOSES)
    for rotation in rotations:
        assert rotation.status == RotationStatus.FINISHED and rotation.to_version == 2
        assert rotation.percent == 100 and rotation.rows_done == rotation.rows_total
    states = _key_states(clinic_a.tenant)
    for purpose in ROTATABLE_PURPOSES:
        if (purpose, 1) in states:
            assert states[(purpose, 1)] == DataKeyState.RETIRED
        assert states[(purpose, 2)] == DataKeyState.ACTIVE
    # The other clinic's keys are untouched.
    assert _key_states(clinic_b.tenant) == before_b
    # The patient still reads back.
    with tenant_scope(clinic_a.tenant):
        clinic_a.patient.refresh_from_db()
        assert clinic_a.patient.display_name

    page = client.get(reverse("keys:keys"))
    body = page.content.decode()
    assert page.status_code == 200
    assert "v2" in body and "100%" in body and "Finished" in body and "Retired" in body
    assert 'http-equiv="refresh"' not in body  # nothing running any more
    detail = client.get(reverse("keys:rotation", kwargs={"rotation_id": rotations[0].public_id}))
    assert detail.status_code == 200 and "100%" in detail.content.decode()

    # Audited once each by the rotation service, with the admin as actor.
    events = list(AuditEvent.objects.filter(tenant=clinic_a.tenant, action__startswith="key.rotation"))
    started = [e for e in events if e.action == "key.rotation_started"]
    completed = [e for e in events if e.action == "key.rotation_completed"]
    assert len(started) == len(ROTATABLE_PURPOSES) and len(completed) == len(ROTATABLE_PURPOSES)
    assert not AuditEvent.objects.filter(tenant=clinic_b.tenant, action__startswith="key.rotation").exists()


def test_rotating_one_purpose(clinic_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = clinic_a.client_as(ADMIN).post(reverse("keys:rotate"), {"purpose": KeyPurpose.PHI})
    assert response.status_code == 302
    assert [(r.purpose, r.status) for r in _rotations(clinic_a.tenant)] == [("phi", RotationStatus.FINISHED)]


def test_unknown_purpose_is_refused_and_changes_nothing(clinic_a, django_capture_on_commit_callbacks):
    before = _key_states(clinic_a.tenant)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = clinic_a.client_as(ADMIN).post(reverse("keys:rotate"), {"purpose": "passwords"})
    assert response.status_code == 400
    assert "Unknown key purpose" in response.content.decode()
    assert not callbacks
    assert _rotations(clinic_a.tenant) == []
    assert _key_states(clinic_a.tenant) == before
    assert not AuditEvent.objects.filter(action__startswith="key.rotation").exists()


def test_posting_while_a_rotation_runs_is_refused_and_changes_nothing(clinic_a, django_capture_on_commit_callbacks):
    running = data_key_rotation_start(tenant=clinic_a.tenant, purpose=KeyPurpose.PHI)
    before = _key_states(clinic_a.tenant)
    client = clinic_a.client_as(ADMIN)
    page = client.get(reverse("keys:keys")).content.decode()
    assert 'http-equiv="refresh"' in page and "Running" in page
    assert re.search(r'<button type="submit" class="button" disabled>Rotate keys', page)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(reverse("keys:rotate"), {"purpose": "all"})
    assert response.status_code == 409
    assert "already running" in response.content.decode()
    assert not callbacks
    assert [(r.pk, r.status) for r in _rotations(clinic_a.tenant)] == [(running.pk, RotationStatus.RUNNING)]
    assert _key_states(clinic_a.tenant) == before
    assert AuditEvent.objects.filter(action="key.rotation_started").count() == 1


def test_other_clinic_admin_gets_404_for_first_clinics_rotation(clinic_a, clinic_b):
    rotation = data_key_rotation_start(tenant=clinic_a.tenant, purpose=KeyPurpose.PHI)
    url = reverse("keys:rotation", kwargs={"rotation_id": rotation.public_id})
    # On their own clinic's host: alpha's rotation does not exist there.
    response = clinic_b.client_as(ADMIN).get(url)
    assert response.status_code == 404
    assert str(rotation.public_id) not in response.content.decode()
    # Beta's console lists nothing of alpha's.
    page = clinic_b.client_as(ADMIN).get(reverse("keys:keys")).content.decode()
    assert str(rotation.public_id) not in page and "No rotation yet" in page
    # On alpha's host beta's admin has no membership at all.
    assert clinic_a.client(clinic_b.user(ADMIN)).get(url).status_code in (403, 404)
    assert clinic_a.client(clinic_b.user(ADMIN)).post(reverse("keys:rotate")).status_code in (403, 404)
    assert [r.pk for r in _rotations(clinic_a.tenant)] == [rotation.pk]
    # Alpha's admin sees it; an unknown id is 404.
    assert clinic_a.client_as(ADMIN).get(url).status_code == 200
    unknown = reverse("keys:rotation", kwargs={"rotation_id": uuid.uuid4()})
    assert clinic_a.client_as(ADMIN).get(unknown).status_code == 404


def test_staff_navigation_offers_keys_and_audit_only_to_their_roles(clinic_a):
    admin_page = clinic_a.client_as("clinic_admin").get("/staff/").content.decode()
    officer_page = clinic_a.client_as("compliance_officer").get("/staff/").content.decode()
    desk_page = clinic_a.client_as("front_desk").get("/staff/").content.decode()
    assert 'href="/staff/keys/"' in admin_page and 'href="/staff/audit/"' not in admin_page
    assert 'href="/staff/audit/"' in officer_page and 'href="/staff/keys/"' not in officer_page
    assert 'href="/staff/keys/"' not in desk_page and 'href="/staff/audit/"' not in desk_page
