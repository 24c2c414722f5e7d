"""Break-glass: a platform operator's emergency access to one clinic (SECURITY.md).

"Time-boxed, reason required, alerts, audited": who may start it, what it
opens and what it does not, when it ends, what is refused, who is emailed,
and what the audit trail records. Mostly through the pages, as the operator
uses them; the service is called directly only for rules the pages cannot
reach (a non-operator never gets past the permission check).
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from portal.tenancy.context import platform_scope, tenant_scope
from security.breakglass import BreakGlassError, break_glass_start
from security.models import BreakGlassGrant, Role
from security.permissions import BREAK_GLASS_ROLE
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

REASON = "INC-2041: the clinic's only admin is locked out and payments staff cannot sign in."
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
START_URL = reverse("breakglass:start")


# --- Helpers ------------------------------------------------------------------------------


@pytest.fixture
def operator():
    return UserFactory.create(email="oncall@platform.example", is_platform_operator=True, is_staff=True)


def _start(client, *, reason=REASON, minutes=30):
    data = {}
    if reason is not None:
        data["reason"] = reason
    if minutes is not None:
        data["minutes"] = str(minutes)
    return client.post(START_URL, data)


def _end(client, grant):
    return _end_id(client, grant.public_id)


def _end_id(client, grant_id):
    return client.post(reverse("breakglass:end", kwargs={"grant_id": grant_id}))


def _grants():
    with platform_scope():
        return list(BreakGlassGrant.objects.order_by("started_at"))


def _only_grant():
    grants = _grants()
    assert len(grants) == 1
    return grants[0]


def _events(action):
    return list(AuditEvent.objects.filter(action=action).select_related("chain"))


def _live_client(clinic, operator):
    """The operator's verified client at `clinic`, with a live 30-minute grant there."""
    client = clinic.client(operator)
    assert _start(client).status_code == 302
    return client


# --- Who may use the pages ---------------------------------------------------------------------


@pytest.mark.parametrize("role", [r.value for r in Role] + ["outsider"])
def test_anyone_but_a_platform_operator_gets_403(clinic_a, outsider, role):
    user = outsider if role == "outsider" else clinic_a.user(role)
    client = clinic_a.client(user)
    assert client.get(START_URL).status_code == 403
    assert _start(client).status_code == 403
    assert _end_id(client, uuid.uuid4()).status_code == 403
    assert _grants() == []


def test_an_operator_must_have_given_the_second_factor(clinic_a, operator):
    client = clinic_a.client()
    client.force_login(operator)  # password only
    response = client.get(START_URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("staff:mfa"))
    assert _start(client).status_code == 302
    assert _grants() == []


def test_an_operator_without_a_grant_has_only_the_break_glass_page(clinic_a, operator):
    client = clinic_a.client(operator)
    page = client.get(START_URL)
    assert page.status_code == 200
    body = page.content.decode()
    assert 'name="reason"' in body and 'name="minutes"' in body
    assert "every clinic admin of Alpha Clinic is emailed" in body
    assert "recorded in the clinic's audit trail" in body
    for name in ("staff:dashboard", "staff:payments", "audit:search", "audit:exports", "keys:keys", "team:list"):
        assert client.get(reverse(name)).status_code == 403, name
    patient = reverse("staff:patient-ledger", kwargs={"patient_id": clinic_a.patient.public_id})
    assert client.get(patient).status_code == 403


# --- What a live grant opens -------------------------------------------------------------------


def test_a_live_grant_opens_payments_patients_and_the_audit_search(clinic_a, operator):
    client = clinic_a.client(operator)
    response = _start(client)
    assert response.status_code == 302
    assert response["Location"] == reverse("staff:dashboard")
    dashboard = client.get(reverse("staff:dashboard"))
    assert dashboard.status_code == 200
    assert "Emergency access" in dashboard.content.decode()  # the banner of base_staff.html
    assert client.get(reverse("staff:payments")).status_code == 200
    patient = reverse("staff:patient-ledger", kwargs={"patient_id": clinic_a.patient.public_id})
    assert client.get(patient).status_code == 200
    assert client.get(reverse("audit:search")).status_code == 200
    assert client.get(reverse("team:list")).status_code == 200


def test_a_live_grant_does_not_open_audit_exports_or_keys(clinic_a, operator):
    client = _live_client(clinic_a, operator)
    assert client.get(reverse("audit:exports")).status_code == 403
    assert (
        client.post(reverse("audit:exports"), {"date_from": "2026-03-01", "date_to": "2026-03-02"}).status_code == 403
    )
    assert client.get(reverse("keys:keys")).status_code == 403
    assert client.post(reverse("keys:rotate"), {"purpose": "all"}).status_code == 403


def test_the_live_grant_page_shows_time_left_and_an_end_button(clinic_a, operator):
    with time_machine.travel(START, tick=False) as traveller:
        client = _live_client(clinic_a, operator)
        traveller.shift(timedelta(minutes=12, seconds=30))
        page = client.get(START_URL)
    assert page.status_code == 200
    body = page.content.decode()
    grant = _only_grant()
    assert "18 minutes left" in body
    assert reverse("breakglass:end", kwargs={"grant_id": grant.public_id}) in body
    assert 'name="reason"' not in body  # no second form while one is live


def test_the_operators_acts_are_audited_with_the_break_glass_role(clinic_a, operator):
    client = _live_client(clinic_a, operator)
    before = AuditEvent.objects.filter(action="ledger.viewed").count()
    assert client.get(reverse("staff:payments")).status_code == 200
    events = AuditEvent.objects.filter(action="ledger.viewed").order_by("sequence")
    assert events.count() == before + 1
    event = events.last()
    assert event is not None
    assert event.actor_role == BREAK_GLASS_ROLE == "break_glass"
    assert event.actor_user_id == operator.public_id
    assert event.tenant_id == clinic_a.tenant.pk


def test_a_grant_at_one_clinic_gives_nothing_at_another(clinic_a, clinic_b, operator):
    _live_client(clinic_a, operator)
    at_b = clinic_b.client(operator)
    for name in ("staff:dashboard", "staff:payments", "audit:search", "team:list"):
        assert at_b.get(reverse(name)).status_code == 403, name
    page = at_b.get(START_URL)
    assert page.status_code == 200
    assert 'name="reason"' in page.content.decode()  # beta offers a new start, not alpha's grant


# --- When it ends ----------------------------------------------------------------------------


def test_access_ends_by_itself_at_expiry(clinic_a, operator):
    with time_machine.travel(START, tick=False) as traveller:
        client = clinic_a.client(operator)
        assert _start(client, minutes=15).status_code == 302
        grant = _only_grant()
        assert grant.expires_at == START + timedelta(minutes=15)
        traveller.move_to(grant.expires_at - timedelta(minutes=1))
        assert client.get(reverse("staff:payments")).status_code == 200
        traveller.move_to(grant.expires_at + timedelta(seconds=1))
        assert client.get(reverse("staff:payments")).status_code == 403
        assert client.get(reverse("audit:search")).status_code == 403
        page = client.get(START_URL)
        assert page.status_code == 200
        assert 'name="reason"' in page.content.decode()
        # Nothing is written at expiry; ending it now is refused.
        assert _end(client, grant).status_code == 400
    assert _events("breakglass.ended") == []


def test_ending_early(clinic_a, operator, django_capture_on_commit_callbacks):
    client = _live_client(clinic_a, operator)
    grant = _only_grant()
    with django_capture_on_commit_callbacks(execute=True):
        response = _end(client, grant)
    assert response.status_code == 302
    assert response["Location"] == START_URL
    page = client.get(START_URL)
    assert "Emergency access ended" in page.content.decode()
    grant.refresh_from_db()
    assert grant.ended_at is not None
    assert not grant.is_live
    assert client.get(reverse("staff:payments")).status_code == 403
    # Ending twice is refused and writes nothing more.
    assert _end(client, grant).status_code == 400
    assert len(_events("breakglass.ended")) == 1


def test_an_operator_can_start_again_after_ending(clinic_a, operator):
    client = _live_client(clinic_a, operator)
    assert _end(client, _only_grant()).status_code == 302
    assert _start(client).status_code == 302
    assert len(_grants()) == 2


def test_another_operators_or_another_clinics_grant_is_404(clinic_a, clinic_b, operator):
    colleague = UserFactory.create(email="colleague@platform.example", is_platform_operator=True, is_staff=True)
    _live_client(clinic_a, colleague)
    theirs = _only_grant()
    assert _end(clinic_a.client(operator), theirs).status_code == 404
    # The colleague's own grant, asked for on another clinic's host.
    assert _end(clinic_b.client(colleague), theirs).status_code == 404
    assert _end_id(clinic_a.client(operator), uuid.uuid4()).status_code == 404
    theirs.refresh_from_db()
    assert theirs.is_live


# --- Refused input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "minutes", "field"),
    [
        pytest.param(None, 30, "reason", id="reason missing"),
        pytest.param("", 30, "reason", id="reason empty"),
        pytest.param("   too short, sorry       ", 30, "reason", id="reason under 20 once stripped"),
        pytest.param("x" * 1001, 30, "reason", id="reason over 1000"),
        pytest.param(REASON, 45, "minutes", id="duration not offered"),
        pytest.param(REASON, 0, "minutes", id="duration zero"),
        pytest.param(REASON, "soon", "minutes", id="duration not a number"),
        pytest.param(REASON, None, "minutes", id="duration missing"),
    ],
)
def test_bad_input_is_400_and_creates_nothing(
    clinic_a, operator, django_capture_on_commit_callbacks, reason, minutes, field
):
    client = clinic_a.client(operator)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = _start(client, reason=reason, minutes=minutes)
    assert response.status_code == 400
    form = response.context["form"]
    assert form.errors.get(field), form.errors
    assert f'id="id_{field}_error"' in response.content.decode()  # the message is shown at its field
    assert _grants() == []
    assert _events("breakglass.started") == []
    assert callbacks == [] and mail.outbox == []


@pytest.mark.parametrize("length", [20, 1000])
def test_reasons_of_20_and_1000_characters_are_accepted(clinic_a, operator, length):
    reason = ("R" * length).center(length + 6)  # surrounding spaces are stripped, not counted
    assert _start(clinic_a.client(operator), reason=reason).status_code == 302
    assert _only_grant().reason == "R" * length


def test_a_second_live_grant_is_refused(clinic_a, operator, django_capture_on_commit_callbacks):
    client = _live_client(clinic_a, operator)
    with django_capture_on_commit_callbacks(execute=True):
        response = _start(client, reason="A second reason, different from the first one.", minutes=60)
    assert response.status_code == 400
    assert "You already have live emergency access to this clinic" in response.content.decode()
    assert len(_grants()) == 1
    assert len(_events("breakglass.started")) == 1
    assert mail.outbox == []


def test_the_service_refuses_anyone_but_an_active_platform_operator(clinic_a, operator):
    inactive = UserFactory.create(email="former@platform.example", is_platform_operator=True, is_active=False)
    for user in (clinic_a.user(Role.CLINIC_ADMIN), inactive):
        with tenant_scope(clinic_a.tenant), pytest.raises(BreakGlassError, match="Only active platform operators"):
            break_glass_start(request=None, tenant=clinic_a.tenant, operator=user, reason=REASON, minutes=15)
    assert _grants() == []
    assert _events("breakglass.started") == []


# --- Alerts to the clinic's admins -------------------------------------------------------------


@pytest.fixture
def second_admins(clinic_a, clinic_b):
    """A second active admin and a deactivated admin at alpha (beta keeps its one admin)."""
    active = UserFactory.create(email="second-admin@alpha.example")
    gone = UserFactory.create(email="former-admin@alpha.example")
    MembershipFactory.create(tenant=clinic_a.tenant, user=active, role=Role.CLINIC_ADMIN)
    MembershipFactory.create(tenant=clinic_a.tenant, user=gone, role=Role.CLINIC_ADMIN, is_active=False)
    return active


def test_starting_emails_each_active_admin_of_that_clinic_only(
    clinic_a, clinic_b, operator, second_admins, django_capture_on_commit_callbacks
):
    client = clinic_a.client(operator)
    with django_capture_on_commit_callbacks(execute=True):
        assert _start(client, minutes=30).status_code == 302
    recipients = sorted(r for message in mail.outbox for r in message.to)
    assert recipients == sorted([clinic_a.user(Role.CLINIC_ADMIN).email, second_admins.email])
    assert all(len(message.to) == 1 for message in mail.outbox)  # one email each
    message = mail.outbox[0]
    grant = _only_grant()
    assert "Alpha Clinic" in message.subject
    assert operator.email in message.body
    assert REASON in message.body
    assert "(30 minutes)" in message.body
    assert "/staff/audit/?date_from=" in message.body
    assert "alpha.localhost" in message.body
    assert str(grant.public_id) in message.body
    assert "Export the audit trail" not in message.body  # lists only what break-glass allows


def test_ending_emails_the_admins(clinic_a, operator, second_admins, django_capture_on_commit_callbacks):
    client = _live_client(clinic_a, operator)
    with django_capture_on_commit_callbacks(execute=True):
        assert _end(client, _only_grant()).status_code == 302
    recipients = sorted(r for message in mail.outbox for r in message.to)
    assert recipients == sorted([clinic_a.user(Role.CLINIC_ADMIN).email, second_admins.email])
    assert all("ended" in message.subject for message in mail.outbox)
    assert operator.email in mail.outbox[0].body
    assert "/staff/audit/?date_from=" in mail.outbox[0].body


def test_a_mail_failure_is_logged_without_the_reason_and_the_grant_stands(
    clinic_a, operator, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("mail server down")

    monkeypatch.setattr("security.breakglass.send_mail", refuse)
    with caplog.at_level(logging.INFO), django_capture_on_commit_callbacks(execute=True):
        assert _start(clinic_a.client(operator)).status_code == 302
    grant = _only_grant()
    assert grant.is_live
    assert f"break-glass alert for grant {grant.public_id} was not sent" in caplog.text
    assert REASON not in caplog.text


# --- The audit trail --------------------------------------------------------------------------


def test_start_and_end_write_one_event_each_in_the_clinics_chain(
    clinic_a, operator, caplog, django_capture_on_commit_callbacks
):
    with caplog.at_level(logging.DEBUG), django_capture_on_commit_callbacks(execute=True):
        client = _live_client(clinic_a, operator)
        grant = _only_grant()
        assert _end(client, grant).status_code == 302
    started, ended = _events("breakglass.started"), _events("breakglass.ended")
    assert len(started) == 1 and len(ended) == 1
    for event in (started[0], ended[0]):
        assert event.tenant_id == clinic_a.tenant.pk
        assert event.chain.key == str(clinic_a.tenant.public_id)
        assert event.actor_user_id == operator.public_id
        assert event.actor_role == "break_glass"
        assert event.target_type == "break_glass_grant"
        assert event.target_id == str(grant.public_id)
        assert event.outcome == "success"
        assert "INC-2041" not in json.dumps(event.details)
    assert started[0].details == {"duration_minutes": 30}
    assert set(ended[0].details) == {"minutes_left"}
    assert started[0].sequence < ended[0].sequence
    assert "INC-2041" not in caplog.text  # the reason stays out of the logs too


def test_the_audit_console_names_the_operator_and_reports_what_they_did(clinic_a):
    from portal.tenancy.context import tenant_scope
    from security.models import BreakGlassGrant
    from tests.conftest import login_verified, tenant_client
    from tests.factories import UserFactory

    operator = UserFactory.create(email="oncall@settle.example", is_platform_operator=True, is_staff=True)
    with tenant_scope(clinic_a.tenant):
        BreakGlassGrant.objects.create(
            tenant=clinic_a.tenant,
            operator=operator,
            reason="Clinic admin locked out before payroll run",
            expires_at=timezone.now() + timedelta(minutes=30),
        )
    client = tenant_client(clinic_a.tenant)
    login_verified(client, operator)
    assert client.get(reverse("staff:payments")).status_code == 200
    officer = clinic_a.client_as("compliance_officer")
    assert "oncall@settle.example (platform operator)" in officer.get(reverse("audit:search")).content.decode()
    report = officer.get(reverse("audit:user-report", kwargs={"user_id": operator.public_id}))
    assert report.status_code == 200 and "ledger.viewed" in report.content.decode()
