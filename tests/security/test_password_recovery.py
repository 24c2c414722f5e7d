"""Staff password recovery: one answer for every address, single-use hour-long links, sessions end.

Personas (tests/conftest.py): alpha's front desk forgets a password; beta's
staff have accounts at another clinic; alpha's clinic admin sends links from
the team page. Everything goes through the HTTP views; the delivery task runs
on commit as under Celery (eagerly in tests).
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from portal.tenancy.context import tenant_scope
from security import tasks
from security.models import Membership, PasswordReset, Role, User
from security.recovery import RESET_REQUESTS_PER_ADDRESS, token_hash
from security.recovery_views import RESET_PLACEHOLDER
from tests.conftest import Clinic, password_step, platform_client
from tests.factories import PERSONA_PASSWORD, totp_device

pytestmark = pytest.mark.django_db

FORGOT = reverse("staff:password-forgot")
SET_PAGE = reverse("staff:password-reset", kwargs={"token": RESET_PLACEHOLDER})
LINK = re.compile(r"https?://([^\s/]+)(/staff/password/reset/([A-Za-z0-9_-]+)/)")
NEW_PASSWORD = "Harbour-lantern-88-quill"
FRONT_DESK = Role.FRONT_DESK.value


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("sequence"))


def ask(client, capture, email: str):
    """POST the forgot-password form, running the on-commit delivery task."""
    with capture(execute=True):
        return client.post(FORGOT, {"email": email})


def link_in(message: mail.EmailMessage) -> tuple[str, str, str]:
    """(host, path, token) of the reset link in an email."""
    match = LINK.search(str(message.body))
    assert match, message.body
    return match.group(1), match.group(2), match.group(3)


def requested_link(clinic: Clinic, capture, role: str = FRONT_DESK) -> str:
    """Ask for a link as the clinic's `role` member; the link's path."""
    response = ask(clinic.client(), capture, clinic.user(role).email)
    assert response.status_code == 200
    return link_in(mail.outbox[-1])[1]


def set_password(client, path: str, password: str = NEW_PASSWORD):
    opened = client.get(path)
    assert opened.status_code == 302 and opened["Location"] == SET_PAGE
    return client.post(SET_PAGE, {"password": password, "password_confirm": password})


# --- Asking ---------------------------------------------------------------------------------


def test_sign_in_page_links_to_forgot_password(clinic_a: Clinic) -> None:
    page = clinic_a.client().get(reverse("staff:login")).content.decode()
    assert f'href="{FORGOT}"' in page


def test_a_member_gets_a_link_on_the_clinic_host_stored_only_as_a_hash(
    clinic_a: Clinic, django_capture_on_commit_callbacks
) -> None:
    user = clinic_a.user(FRONT_DESK)
    response = ask(clinic_a.client(), django_capture_on_commit_callbacks, f"  {user.email.upper()} ")
    assert response.status_code == 200
    assert "If that address belongs to a staff account here" in response.content.decode()
    [message] = mail.outbox
    assert message.to == [user.email]
    host, _, token = link_in(message)
    assert host.startswith(clinic_a.host)
    reset = PasswordReset.objects.get(user=user)
    assert reset.token_hash == token_hash(token)
    assert token not in reset.token_hash
    assert reset.expires_at - reset.created_at == timedelta(hours=1)
    [event] = events("auth.password_reset_requested")
    assert (event.outcome, event.target_id) == ("success", str(user.public_id))
    assert user.email not in str(event.details)


@pytest.mark.parametrize("who", ["unknown", "other_clinic", "deactivated"])
def test_the_answer_is_the_same_whether_or_not_the_address_may_reset(
    who: str, clinic_a: Clinic, clinic_b: Clinic, django_capture_on_commit_callbacks
) -> None:
    known = ask(clinic_a.client(), django_capture_on_commit_callbacks, clinic_a.user(FRONT_DESK).email)
    mail.outbox.clear()
    if who == "unknown":
        email = "nobody-here@example.org"
    elif who == "other_clinic":
        email = clinic_b.user(FRONT_DESK).email
    else:
        email = clinic_a.user(Role.BILLING_MANAGER).email
        with tenant_scope(clinic_a.tenant):
            Membership.objects.filter(user__email=email).update(is_active=False)
    other = ask(clinic_a.client(), django_capture_on_commit_callbacks, email)
    assert (other.status_code, other.templates[0].name) == (known.status_code, known.templates[0].name)
    assert other.content == known.content
    assert mail.outbox == []
    assert events("auth.password_reset_requested")[-1].details["result"] == "no_account"


def test_the_request_does_the_same_work_for_known_and_unknown_addresses(
    clinic_a: Clinic, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks
) -> None:
    """Constant work: the request path runs the same queries; the look-up happens in the task."""
    queued: list[dict] = []
    monkeypatch.setattr(tasks.password_reset_deliver, "delay", lambda **kwargs: queued.append(kwargs))

    def request_queries(email: str) -> tuple[list[str], bytes]:
        client = clinic_a.client()
        with CaptureQueriesContext(connection) as queries:
            response = ask(client, django_capture_on_commit_callbacks, email)
        return [re.sub(r"'[^']*'|\d+", "?", q["sql"]) for q in queries.captured_queries], response.content

    known_sql, known_body = request_queries(clinic_a.user(FRONT_DESK).email)
    unknown_sql, unknown_body = request_queries("nobody-here@example.org")
    assert known_sql == unknown_sql
    assert known_body == unknown_body
    assert [q["email"] for q in queued] == [clinic_a.user(FRONT_DESK).email, "nobody-here@example.org"]
    assert not PasswordReset.objects.exists()


def test_requests_per_address_are_throttled_with_the_same_answer(
    clinic_a: Clinic, django_capture_on_commit_callbacks
) -> None:
    email = clinic_a.user(FRONT_DESK).email
    answers = {
        ask(clinic_a.client(), django_capture_on_commit_callbacks, email).content
        for _ in range(RESET_REQUESTS_PER_ADDRESS + 1)
    }
    assert len(answers) == 1
    assert len(mail.outbox) == RESET_REQUESTS_PER_ADDRESS
    assert events("auth.password_reset_requested")[-1].details["result"] == "throttled"


def test_a_locked_out_account_gets_no_link(clinic_a: Clinic, django_capture_on_commit_callbacks) -> None:
    user = clinic_a.user(FRONT_DESK)
    for n in range(10):
        password_step(clinic_a.client(), user.email, password=f"wrong-{n}-password-x")
    mail.outbox.clear()
    response = ask(clinic_a.client(), django_capture_on_commit_callbacks, user.email)
    assert response.status_code == 200
    assert mail.outbox == []
    assert events("auth.password_reset_requested")[-1].details["result"] == "locked"


def test_a_bad_email_is_a_field_error(clinic_a: Clinic) -> None:
    response = clinic_a.client().post(FORGOT, {"email": "not an email"})
    assert response.status_code == 400
    assert "Enter a valid email address" in response.content.decode()


def test_an_operator_resets_on_the_platform_host(django_capture_on_commit_callbacks) -> None:
    operator = User.objects.create_user("ops@platform.example", PERSONA_PASSWORD, is_platform_operator=True)
    response = ask(platform_client(), django_capture_on_commit_callbacks, operator.email)
    assert response.status_code == 200
    host, path, _ = link_in(mail.outbox[-1])
    client = platform_client()
    assert set_password(client, path).status_code == 302
    operator.refresh_from_db()
    assert operator.check_password(NEW_PASSWORD)


# --- Using the link ------------------------------------------------------------------------


def test_setting_a_new_password_ends_every_session_and_still_asks_for_the_code(
    clinic_a: Clinic, django_capture_on_commit_callbacks
) -> None:
    user = clinic_a.user(FRONT_DESK)
    elsewhere = clinic_a.client_as(FRONT_DESK)
    assert elsewhere.get(reverse("staff:dashboard")).status_code == 200
    path = requested_link(clinic_a, django_capture_on_commit_callbacks)

    client = clinic_a.client()
    response = set_password(client, path)
    assert response.status_code == 302 and response["Location"] == reverse("staff:login")
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    # The other session is gone.
    assert elsewhere.get(reverse("staff:dashboard")).status_code == 302
    # Signing in with the new password leads to the second factor, not the console.
    totp_device(user)
    step = password_step(clinic_a.client(), user.email, password=NEW_PASSWORD)
    assert step.status_code == 302 and step["Location"].startswith(reverse("staff:mfa"))
    [event] = events("auth.password_reset_completed")
    assert event.target_id == str(user.public_id)
    assert event.details["sessions_ended"] >= 1


def test_a_link_works_once(clinic_a: Clinic, django_capture_on_commit_callbacks) -> None:
    path = requested_link(clinic_a, django_capture_on_commit_callbacks)
    assert set_password(clinic_a.client(), path).status_code == 302
    again = clinic_a.client().get(path)
    assert again.status_code == 404
    assert "can't be used" in again.content.decode()


def test_a_link_expires_after_an_hour(clinic_a: Clinic, django_capture_on_commit_callbacks) -> None:
    path = requested_link(clinic_a, django_capture_on_commit_callbacks)
    with time_machine.travel(timezone.now() + timedelta(minutes=61)):
        assert clinic_a.client().get(path).status_code == 404


def test_an_opened_link_that_expires_before_the_form_is_sent_changes_nothing(
    clinic_a: Clinic, django_capture_on_commit_callbacks
) -> None:
    path = requested_link(clinic_a, django_capture_on_commit_callbacks)
    client = clinic_a.client()
    assert client.get(path).status_code == 302
    with time_machine.travel(timezone.now() + timedelta(minutes=61)):
        response = client.post(SET_PAGE, {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD})
    assert response.status_code == 404
    assert not User.objects.get(pk=clinic_a.user(FRONT_DESK).pk).check_password(NEW_PASSWORD)


def test_a_newer_link_replaces_the_older(clinic_a: Clinic, django_capture_on_commit_callbacks) -> None:
    first = requested_link(clinic_a, django_capture_on_commit_callbacks)
    second = requested_link(clinic_a, django_capture_on_commit_callbacks)
    assert clinic_a.client().get(first).status_code == 404
    assert clinic_a.client().get(second).status_code == 302


def test_a_link_for_a_deactivated_account_is_refused(clinic_a: Clinic, django_capture_on_commit_callbacks) -> None:
    path = requested_link(clinic_a, django_capture_on_commit_callbacks)
    with tenant_scope(clinic_a.tenant):
        Membership.objects.filter(user=clinic_a.user(FRONT_DESK)).update(is_active=False)
    response = clinic_a.client().get(path)
    assert response.status_code == 404
    assert clinic_a.user(FRONT_DESK).email not in response.content.decode()


def test_a_link_opens_only_on_the_host_it_was_issued_for(
    clinic_a: Clinic, clinic_b: Clinic, django_capture_on_commit_callbacks
) -> None:
    path = requested_link(clinic_a, django_capture_on_commit_callbacks)
    assert clinic_b.client().get(path).status_code == 404
    assert platform_client().get(path).status_code == 404


def test_a_weak_password_is_refused_and_the_link_stays_usable(
    clinic_a: Clinic, django_capture_on_commit_callbacks
) -> None:
    path = requested_link(clinic_a, django_capture_on_commit_callbacks)
    client = clinic_a.client()
    assert client.get(path).status_code == 302
    weak = client.post(SET_PAGE, {"password": "password", "password_confirm": "password"})
    assert weak.status_code == 400
    assert 'id="id_password-error"' in weak.content.decode() or "at least 12" in weak.content.decode()
    differ = client.post(SET_PAGE, {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD + "x"})
    assert differ.status_code == 400 and "The two passwords differ" in differ.content.decode()
    assert client.post(SET_PAGE, {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}).status_code == 302


def test_the_set_page_without_an_opened_link_is_refused(clinic_a: Clinic) -> None:
    response = clinic_a.client().post(SET_PAGE, {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD})
    assert response.status_code == 404


def test_guessing_links_locks_the_ip(clinic_a: Clinic, django_capture_on_commit_callbacks) -> None:
    path = requested_link(clinic_a, django_capture_on_commit_callbacks)
    client = clinic_a.client()
    statuses = [
        client.get(reverse("staff:password-reset", kwargs={"token": f"{'A' * 42}{n}"})).status_code for n in range(10)
    ]
    assert statuses[:9] == [404] * 9 and statuses[9] == 429
    # Locked: even a good link is refused from this address now.
    assert client.get(path).status_code == 429
    assert events("auth.password_reset_refused")[-1].details["locked"] is True


# --- From the team page ------------------------------------------------------------------------


def _member_url(clinic: Clinic, role: str) -> str:
    with tenant_scope(clinic.tenant):
        membership = Membership.objects.get(user=clinic.user(role))
    return reverse("team:member-password-reset", kwargs={"membership_id": membership.public_id})


def test_a_clinic_admin_emails_a_member_a_link(clinic_a: Clinic, django_capture_on_commit_callbacks) -> None:
    admin = clinic_a.client_as(Role.CLINIC_ADMIN.value)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(_member_url(clinic_a, FRONT_DESK))
    assert response.status_code == 302
    [message] = mail.outbox
    assert message.to == [clinic_a.user(FRONT_DESK).email]
    assert "An administrator of" in str(message.body)
    _, path, _ = link_in(message)
    assert set_password(clinic_a.client(), path).status_code == 302
    [sent] = events("staff.password_reset_sent")
    assert sent.actor_user_id == clinic_a.user(Role.CLINIC_ADMIN.value).public_id
    assert sent.target_id == str(clinic_a.user(FRONT_DESK).public_id)
    assert events("auth.password_reset_completed")[0].details["sent_by_admin"] is True


def test_no_link_for_a_deactivated_member(clinic_a: Clinic, django_capture_on_commit_callbacks) -> None:
    url = _member_url(clinic_a, FRONT_DESK)
    with tenant_scope(clinic_a.tenant):
        Membership.objects.filter(user=clinic_a.user(FRONT_DESK)).update(is_active=False)
    response = clinic_a.client_as(Role.CLINIC_ADMIN.value).post(url)
    assert response.status_code == 400
    assert "deactivated" in response.content.decode()
    assert mail.outbox == []
