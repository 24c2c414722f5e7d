"""The platform console (portal.views.platform) through HTTP on the platform host.

Personas: the operator (platform operator, both factors), a clinic admin of
alpha (a verified staff member who is not an operator), and anonymous.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from billing.models import Payment, PaymentStatus
from billing.services.checkout import checkout_open
from portal.models import Tenant
from portal.tenancy.context import tenant_scope
from security.domains import set_txt_resolver
from security.models import Role, StaffInvitation
from tests.conftest import Clinic, platform_client, sign_in
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

NEW_CLINIC = {
    "name": "Lakeside Pediatrics",
    "slug": "lakeside",
    "timezone": "America/Chicago",
    "currency": "USD",
    "support_phone": "+1 312 555 0142",
    "support_email": "billing@lakeside.example",
    "custom_domain": "",
    "admin_email": "ada@lakeside.example",
}


@pytest.fixture
def operator():
    return UserFactory.create(email="op@platform.example", is_platform_operator=True, is_staff=True)


@pytest.fixture
def console(operator):
    return platform_client(user=operator)


def _url(name: str, tenant: Tenant | None = None) -> str:
    return reverse(f"platform:{name}", kwargs={"tenant_id": tenant.public_id} if tenant else None)


def _profile(tenant: Tenant, **changes: str) -> dict[str, str]:
    data = {
        "name": tenant.name,
        "timezone": tenant.timezone,
        "support_phone": tenant.support_phone,
        "support_email": tenant.support_email,
        "custom_domain": tenant.custom_domain or "",
    }
    return {**data, **changes}


# --- Who may use it ------------------------------------------------------------------------


def test_operator_signs_in_on_the_platform_host_with_both_factors_and_lands_in_the_console(operator):
    client = platform_client()
    response = sign_in(client, operator)
    assert response.status_code == 302
    assert response["Location"] == reverse("platform:clinics")
    assert client.get(response["Location"]).status_code == 200


def test_the_console_sends_a_password_only_operator_to_the_second_factor(operator):
    client = platform_client()
    client.force_login(operator)
    response = client.get(_url("clinics"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("staff:mfa"))


def test_anonymous_visitors_are_sent_to_sign_in():
    response = platform_client().get(_url("clinics"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("staff:login"))


def test_clinic_staff_are_refused_the_console_alike_for_known_and_unknown_clinics(clinic_a):
    client = platform_client(user=clinic_a.user(Role.CLINIC_ADMIN))
    assert client.get(_url("clinics")).status_code == 403
    known = client.get(_url("clinic", clinic_a.tenant))
    unknown = client.get(reverse("platform:clinic", kwargs={"tenant_id": uuid.uuid4()}))
    assert known.status_code == unknown.status_code == 403

    # The CSP nonce and the masked CSRF token differ per response; the rest must be the same.
    def page(response):  # type: ignore[no-untyped-def]
        text = re.sub(r'nonce="[^"]+"', "", response.content.decode())
        return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", text)

    assert page(known) == page(unknown), "a refusal says nothing about whether the clinic exists"


def test_an_unknown_clinic_is_404_for_the_operator(console):
    assert console.get(reverse("platform:clinic", kwargs={"tenant_id": uuid.uuid4()})).status_code == 404


def test_a_clinic_host_never_serves_the_console(clinic_a, operator):
    client = clinic_a.client(operator)
    assert client.get(_url("clinics")).status_code == 404
    assert client.get(_url("clinic", clinic_a.tenant)).status_code == 404


def test_the_platform_front_page_points_operators_to_the_console():
    assert b'href="/platform/"' in platform_client().get("/").content


# --- The list ------------------------------------------------------------------------------


def test_the_list_shows_each_clinic_with_its_status_and_figures(console, clinic_a: Clinic, clinic_b: Clinic):
    with tenant_scope(clinic_a.tenant):
        Payment.objects.create(
            tenant=clinic_a.tenant,
            checkout=checkout_open(tenant=clinic_a.tenant, statement=clinic_a.statement),
            statement=clinic_a.statement,
            patient=clinic_a.patient,
            attempt_number=1,
            setup_intent_id="seti_console",
            amount_minor=2500,
            currency="USD",
            status=PaymentStatus.SUCCEEDED,
            succeeded_at=timezone.now() - timedelta(days=2),
        )
    Tenant.objects.filter(pk=clinic_b.tenant.pk).update(suspended_at=timezone.now(), suspension_reason="Paused here")
    Tenant.objects.filter(pk=clinic_a.tenant.pk).update(custom_domain="pay.alpha.example", custom_domain_token="t")
    with CaptureQueriesContext(connection) as queries:
        response = console.get(_url("clinics"))
    assert response.status_code == 200
    rows = {row["tenant"].slug: row for row in response.context["rows"]}
    alpha, beta = rows["alpha"], rows["beta"]
    assert [label for label, _ in alpha["status"]] == ["Active", "Domain pending"]
    assert [label for label, _ in beta["status"]] == ["Suspended"]
    assert alpha["staff"] == len(Role.values) - 1, "every role but patient"
    assert alpha["figures"].patients == 1
    assert alpha["figures"].payments_recent == 1 and alpha["figures"].collected_recent.minor_units == 2500
    assert beta["figures"].payments_recent == 0
    body = response.content.decode()
    assert "Alpha Clinic" in body and "Domain pending" in body and "Suspended" in body
    assert "Paused here" not in body, "the reason is on the clinic's page only"
    assert len(queries) <= 16, [q["sql"] for q in queries.captured_queries]


def test_the_list_query_count_does_not_grow_with_clinics(console, clinic_a, clinic_b):
    with CaptureQueriesContext(connection) as two:
        console.get(_url("clinics"))
    for n in range(3):
        Tenant.objects.create(slug=f"extra{n}", name=f"Extra {n}")
    with CaptureQueriesContext(connection) as five:
        console.get(_url("clinics"))
    assert len(five) == len(two)


# --- Create --------------------------------------------------------------------------------


def test_create_a_clinic_and_invite_its_admin(console, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = console.post(_url("clinic-new"), NEW_CLINIC)
    tenant = Tenant.objects.get(slug="lakeside")
    assert response.status_code == 302 and response["Location"] == _url("clinic", tenant)
    page = console.get(response["Location"])
    assert (
        "Lakeside Pediatrics is on the platform. An invitation was sent to ada@lakeside.example."
        in page.content.decode()
    )
    assert "ada@lakeside.example" in page.content.decode()
    [message] = mail.outbox
    assert message.to == ["ada@lakeside.example"]


@pytest.mark.parametrize(
    ("slug", "message"),
    [
        ("alpha", "&#x27;alpha&#x27; is already taken by another clinic"),
        ("www", "&#x27;www&#x27; is reserved for the platform"),
        ("Lake Side!", "is not a valid address"),
    ],
)
def test_a_bad_slug_is_shown_on_its_field_and_nothing_is_saved(console, clinic_a, slug, message):
    before = Tenant.objects.count()
    response = console.post(_url("clinic-new"), {**NEW_CLINIC, "slug": slug})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert response.context["form"].errors["slug"]
    assert Tenant.objects.count() == before
    assert mail.outbox == []
    with tenant_scope(clinic_a.tenant):
        assert not StaffInvitation.objects.filter(email="ada@lakeside.example").exists()


def test_a_bad_domain_is_shown_on_its_field(console):
    response = console.post(_url("clinic-new"), {**NEW_CLINIC, "custom_domain": "https://pay.lakeside.example"})
    assert response.status_code == 400
    assert "domain name only" in " ".join(response.context["form"].errors["custom_domain"])
    assert not Tenant.objects.filter(slug="lakeside").exists()


def test_malformed_posts_are_400_not_500(console):
    response = console.post(_url("clinic-new"), {"name": "x" * 500, "timezone": "Mars/Base", "currency": "???"})
    assert response.status_code == 400
    assert set(response.context["form"].errors) >= {"name", "timezone", "currency"}


# --- The clinic's page ----------------------------------------------------------------------


def test_edit_the_profile(console, clinic_a):
    response = console.post(_url("clinic-edit", clinic_a.tenant), _profile(clinic_a.tenant, name="Alpha Family Clinic"))
    assert response.status_code == 302
    clinic_a.tenant.refresh_from_db()
    assert clinic_a.tenant.name == "Alpha Family Clinic"
    form = console.get(_url("clinic-edit", clinic_a.tenant))
    assert form.status_code == 200 and "slug" not in form.context["form"].fields


def test_edit_refuses_bad_input_on_its_field(console, clinic_a, clinic_b):
    Tenant.objects.filter(pk=clinic_b.tenant.pk).update(custom_domain="pay.beta.example")
    response = console.post(
        _url("clinic-edit", clinic_a.tenant), _profile(clinic_a.tenant, custom_domain="pay.beta.example")
    )
    assert response.status_code == 400
    assert response.context["form"].errors["custom_domain"] == ["pay.beta.example is already used by another clinic."]
    clinic_a.tenant.refresh_from_db()
    assert clinic_a.tenant.custom_domain is None


def test_the_page_shows_the_dns_record_and_the_button_verifies(console, clinic_a):
    console.post(_url("clinic-edit", clinic_a.tenant), _profile(clinic_a.tenant, custom_domain="pay.alpha.example"))
    clinic_a.tenant.refresh_from_db()
    token = clinic_a.tenant.custom_domain_token
    page = console.get(_url("clinic", clinic_a.tenant)).content.decode()
    assert "_settle-verify.pay.alpha.example" in page and token in page
    set_txt_resolver(lambda name: [])
    try:
        response = console.post(_url("clinic-domain-verify", clinic_a.tenant), follow=True)
        assert "No TXT record was found at _settle-verify.pay.alpha.example" in response.content.decode()
        set_txt_resolver(lambda name: [token])
        response = console.post(_url("clinic-domain-verify", clinic_a.tenant), follow=True)
    finally:
        set_txt_resolver(None)
    assert "The domain is verified" in response.content.decode()
    clinic_a.tenant.refresh_from_db()
    assert clinic_a.tenant.custom_domain_verified_at is not None


def test_invite_from_the_page_and_a_bad_email_on_its_field(console, clinic_a, django_capture_on_commit_callbacks):
    bad = console.post(_url("clinic-invite", clinic_a.tenant), {"admin_email": "not an email"})
    assert bad.status_code == 400 and bad.context["invite_form"].errors["admin_email"]
    taken = console.post(_url("clinic-invite", clinic_a.tenant), {"admin_email": clinic_a.user(Role.FRONT_DESK).email})
    assert taken.status_code == 400
    assert "already on this clinic&#x27;s staff" in taken.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        ok = console.post(_url("clinic-invite", clinic_a.tenant), {"admin_email": "new-admin@alpha.example"})
    assert ok.status_code == 302
    assert [m.to for m in mail.outbox] == [["new-admin@alpha.example"]]
    with tenant_scope(clinic_a.tenant):
        invitation = StaffInvitation.objects.get(email="new-admin@alpha.example")
    assert invitation.role == Role.CLINIC_ADMIN


def test_suspend_needs_a_reason_then_reactivate(console, clinic_a):
    short = console.post(_url("clinic-suspend", clinic_a.tenant), {"reason": "no"})
    assert short.status_code == 400 and short.context["suspend_form"].errors["reason"]
    clinic_a.tenant.refresh_from_db()
    assert clinic_a.tenant.suspended_at is None
    done = console.post(
        _url("clinic-suspend", clinic_a.tenant), {"reason": "Clinic asked to pause payments"}, follow=True
    )
    assert "Alpha Clinic is suspended." in done.content.decode()
    assert "Clinic asked to pause payments" in done.content.decode()
    again = console.post(
        _url("clinic-suspend", clinic_a.tenant), {"reason": "Clinic asked to pause payments"}, follow=True
    )
    assert "already suspended" in again.content.decode()
    back = console.post(_url("clinic-reactivate", clinic_a.tenant), follow=True)
    assert "Alpha Clinic is active again." in back.content.decode()
    clinic_a.tenant.refresh_from_db()
    assert clinic_a.tenant.suspended_at is None


def test_console_views_take_only_their_methods(console, clinic_a):
    assert console.get(_url("clinic-suspend", clinic_a.tenant)).status_code == 405
    assert console.post(_url("clinics")).status_code == 405
