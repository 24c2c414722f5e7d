"""Staff session limits (15 min idle, 12 h absolute) and the session list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from django.contrib.sessions.models import Session
from django.urls import reverse

from audit.models import AuditEvent
from security.models import UserSession
from security.sessions import ABSOLUTE_MESSAGE, IDLE_MESSAGE
from tests.conftest import platform_client, sign_in

pytestmark = pytest.mark.django_db

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PAYMENTS = "/staff/payments/"


def _sign_in(clinic, role="front_desk"):
    client = clinic.client()
    response = sign_in(client, clinic.user(role))
    assert response.status_code == 302
    return client


def _session_id(client) -> str:
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def test_still_signed_in_at_14_min_59_s_idle(clinic_a):
    with time_machine.travel(START, tick=False) as traveller:
        client = _sign_in(clinic_a)
        traveller.shift(timedelta(minutes=14, seconds=59))
        assert client.get(PAYMENTS).status_code == 200
        # Activity restarts the idle clock.
        traveller.shift(timedelta(minutes=14, seconds=59))
        assert client.get(PAYMENTS).status_code == 200


def test_idle_logoff_at_15_min_1_s_ends_the_session_server_side(clinic_a):
    with time_machine.travel(START, tick=False) as traveller:
        client = _sign_in(clinic_a)
        old_id = _session_id(client)
        traveller.shift(timedelta(minutes=15, seconds=1))
        response = client.get(PAYMENTS)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("staff:login"))
        assert not Session.objects.filter(session_key=old_id).exists()
        page = client.get(response["Location"])
        assert IDLE_MESSAGE in page.content.decode()
        assert client.get(PAYMENTS).status_code == 302


def test_absolute_logoff_at_12_hours_even_when_active(clinic_a):
    with time_machine.travel(START, tick=False) as traveller:
        client = _sign_in(clinic_a)
        for _ in range(12 * 6 - 1):  # a request every 10 minutes
            traveller.shift(timedelta(minutes=10))
            assert client.get(PAYMENTS).status_code == 200
        traveller.shift(timedelta(minutes=9, seconds=59))
        assert client.get(PAYMENTS).status_code == 200  # 11:59:59 after sign-in
        traveller.shift(timedelta(seconds=1))
        response = client.get(PAYMENTS)
        assert response.status_code == 302
        assert ABSOLUTE_MESSAGE in client.get(response["Location"]).content.decode()


def test_patients_are_not_held_to_staff_limits(clinic_a):
    with time_machine.travel(START, tick=False) as traveller:
        client = clinic_a.client_as("patient")
        client.get("/")
        traveller.shift(timedelta(hours=1))  # well past the staff idle limit
        client.get("/")
        assert client.session.get("_auth_user_id") == str(clinic_a.user("patient").pk)


def test_platform_operator_sessions_expire_to_the_admin_login(db):
    from tests.factories import UserFactory

    operator = UserFactory.create(email="op@settle.example", is_platform_operator=True, is_staff=True)
    with time_machine.travel(START, tick=False) as traveller:
        client = platform_client(user=operator)
        client.get("/")
        traveller.shift(timedelta(minutes=16))
        response = client.get("/")
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_old_session_id_is_refused_after_logout(clinic_a):
    client = _sign_in(clinic_a)
    old_id = _session_id(client)
    client.post(reverse("staff:logout"))
    assert not Session.objects.filter(session_key=old_id).exists()
    replay = clinic_a.client()
    replay.cookies[settings.SESSION_COOKIE_NAME] = old_id
    response = replay.get(PAYMENTS)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("staff:login"))


# --- The session list ----------------------------------------------------------------------


def test_session_list_shows_own_sessions_and_ends_one(clinic_a):
    laptop = _sign_in(clinic_a)
    phone = _sign_in(clinic_a)
    _sign_in(clinic_a, role="billing_manager")  # someone else's
    page = laptop.get(reverse("sessions:list"))
    assert page.status_code == 200
    body = page.content.decode()
    assert body.count("This session") == 1
    phone_row = UserSession.objects.get(session_key=_session_id(phone))
    assert str(phone_row.public_id) in body
    assert _session_id(phone) not in body  # session keys are never shown
    other = UserSession.objects.exclude(user=clinic_a.user("front_desk")).get()
    assert str(other.public_id) not in body

    response = laptop.post(reverse("sessions:end", kwargs={"session_id": phone_row.public_id}))
    assert response.status_code == 302
    assert phone.get(PAYMENTS).status_code == 302  # the phone is signed out
    assert laptop.get(PAYMENTS).status_code == 200
    event = AuditEvent.objects.get(action="auth.session_ended")
    assert event.target_id == str(phone_row.public_id)


def test_another_users_session_is_404_and_untouched(clinic_a):
    client = _sign_in(clinic_a)
    victim = _sign_in(clinic_a, role="billing_manager")
    row = UserSession.objects.get(session_key=_session_id(victim))
    response = client.post(reverse("sessions:end", kwargs={"session_id": row.public_id}))
    assert response.status_code == 404
    assert victim.get(PAYMENTS).status_code == 200


def test_end_all_other_sessions_keeps_this_one(clinic_a):
    here = _sign_in(clinic_a)
    elsewhere = [_sign_in(clinic_a) for _ in range(2)]
    response = here.post(reverse("sessions:end-others"))
    assert response.status_code == 302
    assert all(c.get(PAYMENTS).status_code == 302 for c in elsewhere)
    assert here.get(PAYMENTS).status_code == 200
    event = AuditEvent.objects.get(action="auth.sessions_ended_others")
    assert event.details["count"] == 2


def test_the_current_session_is_ended_by_signing_out_not_by_the_list(clinic_a):
    client = _sign_in(clinic_a)
    row = UserSession.objects.get(session_key=_session_id(client))
    client.post(reverse("sessions:end", kwargs={"session_id": row.public_id}))
    assert client.get(PAYMENTS).status_code == 200


def test_session_pages_need_post_a_staff_role_and_sign_in(clinic_a, outsider):
    assert clinic_a.client_as("front_desk").get(reverse("sessions:end-others")).status_code == 405
    assert clinic_a.client_as("patient").get(reverse("sessions:list")).status_code == 403
    assert clinic_a.client(outsider).get(reverse("sessions:list")).status_code == 403
    assert clinic_a.client().get(reverse("sessions:list")).status_code == 302
    for role in ("front_desk", "billing_manager", "clinic_admin", "compliance_officer"):
        assert clinic_a.client_as(role).get(reverse("sessions:list")).status_code == 200
