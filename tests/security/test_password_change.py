"""Changing one's password: the staff rule applies, and every other session ends server-side."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.urls import reverse

from audit.models import AuditEvent
from tests.conftest import sign_in
from tests.factories import PERSONA_PASSWORD

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "violet-harbour-lantern-7731"
PAYMENTS = "/staff/payments/"


def _signed_in(clinic, role="billing_manager"):
    client = clinic.client()
    assert sign_in(client, clinic.user(role)).status_code == 302
    return client


def _change(client, old=PERSONA_PASSWORD, new=NEW_PASSWORD, again=None):
    return client.post(
        reverse("staff:password-change"),
        {"old_password": old, "new_password1": new, "new_password2": again if again is not None else new},
    )


def test_password_change_ends_other_sessions_and_keeps_this_one(clinic_a):
    desk, laptop, phone = _signed_in(clinic_a), _signed_in(clinic_a), _signed_in(clinic_a)
    laptop_id = laptop.cookies[settings.SESSION_COOKIE_NAME].value
    phone_id = phone.cookies[settings.SESSION_COOKIE_NAME].value

    response = _change(desk)
    assert response.status_code == 302
    assert "2 other sessions were signed out" in desk.get(response["Location"]).content.decode()
    assert desk.get(PAYMENTS).status_code == 200, "the session that changed it stays signed in"
    for client, old_id in ((laptop, laptop_id), (phone, phone_id)):
        assert not Session.objects.filter(session_key=old_id).exists(), "ended server-side"
        response = client.get(PAYMENTS)
        assert response.status_code == 302 and response["Location"].startswith(reverse("staff:login"))

    event = AuditEvent.objects.get(action="auth.password_changed")
    assert event.details == {"sessions_ended": 2}
    user = clinic_a.user("billing_manager")
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD) and not user.check_password(PERSONA_PASSWORD)


def test_an_old_session_id_is_refused_after_a_password_change(clinic_a):
    desk, other = _signed_in(clinic_a), _signed_in(clinic_a)
    old_id = other.cookies[settings.SESSION_COOKIE_NAME].value
    assert _change(desk).status_code == 302
    replay = clinic_a.client()
    replay.cookies[settings.SESSION_COOKIE_NAME] = old_id
    response = replay.get(PAYMENTS)
    assert response.status_code == 302 and response["Location"].startswith(reverse("staff:login"))


@pytest.mark.parametrize(
    ("old", "new", "again", "message"),
    [
        ("not-my-password-1", NEW_PASSWORD, None, "old password was entered incorrectly"),
        (PERSONA_PASSWORD, "short1", None, "at least 12 characters"),
        (PERSONA_PASSWORD, "onlyletterslongenough", None, "at least one letter and at least one digit"),
        (PERSONA_PASSWORD, "password1234", None, "common or breached"),
        (PERSONA_PASSWORD, NEW_PASSWORD, "something-else-123", "didn"),
        (PERSONA_PASSWORD, "x1" * 3000, None, "at most"),
    ],
)
def test_a_refused_password_changes_nothing(clinic_a, old, new, again, message):
    desk, other = _signed_in(clinic_a), _signed_in(clinic_a)
    response = _change(desk, old=old, new=new, again=again)
    assert response.status_code == 400
    assert message in response.content.decode()
    user = clinic_a.user("billing_manager")
    user.refresh_from_db()
    assert user.check_password(PERSONA_PASSWORD)
    assert other.get(PAYMENTS).status_code == 200, "no session ended"
    assert not AuditEvent.objects.filter(action="auth.password_changed").exists()


def test_sign_out_is_post_only_and_ends_the_session(clinic_a):
    client = _signed_in(clinic_a)
    session_id = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert client.get(reverse("staff:logout")).status_code == 405
    assert Session.objects.filter(session_key=session_id).exists()
    assert client.post(reverse("staff:logout")).status_code == 302
    assert not Session.objects.filter(session_key=session_id).exists()
