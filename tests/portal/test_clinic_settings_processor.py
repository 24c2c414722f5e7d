"""Clinic settings, processor connection: keys checked with the processor, the webhook, write-only secrets.

Refusals the processor would give are scripted (tests.portal.settings_support.FakeAdmin);
the real calls run against localstripe.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.urls import reverse

from audit.models import AuditEvent
from billing.models import ProcessorAccount
from billing.processor import set_processor_admin_factory
from billing.processor.base import WebhookRejected
from billing.services.processor_accounts import WEBHOOK_EVENTS, key_mode
from billing.services.webhooks import webhook_receive
from portal.tenancy.context import tenant_scope
from security.models import Role
from tests.conftest import Clinic
from tests.portal.settings_support import FakeAdmin

pytestmark = pytest.mark.django_db

ADMIN = Role.CLINIC_ADMIN.value
PK = "pk_test_51NewClinicPublishableKey0000"
SK = "sk_test_51NewClinicSecretKeyValue9876"
RK = "rk_test_51NewClinicRestrictedKey5555"


@pytest.fixture
def admin_api() -> Iterator[FakeAdmin]:
    fake = FakeAdmin()
    set_processor_admin_factory(fake)
    yield fake
    set_processor_admin_factory(None)


def _account(clinic: Clinic) -> ProcessorAccount:
    """The clinic's account with its secrets decrypted (inside the clinic's scope)."""
    with tenant_scope(clinic.tenant):
        account = ProcessorAccount.objects.get(tenant=clinic.tenant)
        account.secret_key = str(account.secret_key)
        account.webhook_secret = str(account.webhook_secret)
    return account


def _save_keys(clinic: Clinic, pk: str = PK, sk: str = SK, *, follow: bool = False) -> Any:
    return clinic.client_as(ADMIN).post(
        reverse("clinic_settings:processor"), {"publishable_key": pk, "secret_key": sk}, follow=follow
    )


def test_key_mode_reads_the_prefix():
    assert key_mode("pk_test_x") == "test" and key_mode("rk_live_x") == "live" and key_mode("sk_x") is None


def _new_clinic(clinic: Clinic) -> None:
    """As a clinic fresh from onboarding: no processor account yet."""
    with tenant_scope(clinic.tenant):
        ProcessorAccount.objects.filter(tenant=clinic.tenant).delete()


def test_good_keys_are_checked_saved_encrypted_and_the_webhook_registered(clinic_a: Clinic, admin_api: FakeAdmin):
    _new_clinic(clinic_a)
    response = _save_keys(clinic_a, follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Stripe accepted the keys (test mode)" in page
    assert "webhook endpoint is registered" in page
    assert admin_api.keys_seen == [SK, SK]
    (endpoint,) = admin_api.endpoints
    assert endpoint["url"] == f"http://localhost:8000/webhooks/stripe/{clinic_a.tenant.public_id}/"
    assert endpoint["events"] == list(WEBHOOK_EVENTS)
    account = _account(clinic_a)
    assert (account.publishable_key, account.secret_key) == (PK, SK)
    assert account.webhook_secret == "whsec_fromapi_0123456789abcd" and account.webhook_endpoint_id == "we_fake0001"
    assert account.keys_verified_at and account.secret_key_set_at and not account.livemode
    # Write-only: the page shows the ending, never the secret.
    assert SK not in page and "ends …9876" in page and "whsec_fromapi" not in page and "ends …abcd" in page
    # Encrypted at rest.
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret_key, webhook_secret FROM billing_processoraccount WHERE id = %s", [account.pk])
        stored = cursor.fetchone()
    assert SK not in str(stored) and "whsec_fromapi" not in str(stored)
    keys_event = AuditEvent.objects.get(tenant=clinic_a.tenant, action="settings.processor_keys_changed")
    assert keys_event.details == {
        "mode_old": None,
        "mode_new": "test",
        "publishable_key_changed": True,
        "secret_key": "changed",
    }
    hook_event = AuditEvent.objects.get(tenant=clinic_a.tenant, action="settings.webhook_registered")
    assert hook_event.details["webhook_secret"] == "changed" and hook_event.details["endpoint"] == "we_fake0001"
    assert SK not in str(keys_event.details) + str(hook_event.details)


def test_a_restricted_key_is_accepted(clinic_a: Clinic, admin_api: FakeAdmin):
    assert _save_keys(clinic_a, sk=RK).status_code == 302
    assert _account(clinic_a).secret_key == RK


def test_secret_inputs_are_never_rendered_back(clinic_a: Clinic, admin_api: FakeAdmin):
    admin_api.refuse = "authentication"
    page = _save_keys(clinic_a).content.decode()
    assert SK not in page
    assert PK in page  # the publishable key is not a secret: kept for correction


@pytest.mark.parametrize(
    ("pk", "sk", "field", "message"),
    [
        (PK, PK, "secret_key", "This is a publishable key. The secret key starts with sk_"),
        (SK, SK, "publishable_key", "This is a secret key. The publishable key starts with pk_test_"),
        ("pub_123", SK, "publishable_key", "A publishable key starts with pk_test_ or pk_live_."),
        (PK, "whsec_123", "secret_key", "A secret key starts with sk_test_ or sk_live_"),
        (
            PK,
            "sk_live_51Other",
            "secret_key",
            "publishable key is a test-mode key but the secret key is a live-mode key",
        ),
        ("pk_live_51Abc", "sk_live_51Abcdefgh", "publishable_key", "Live-mode keys are refused outside production"),
    ],
)
def test_keys_of_the_wrong_kind_or_mode_are_refused_before_any_call(
    clinic_a: Clinic, admin_api: FakeAdmin, pk: str, sk: str, field: str, message: str
):
    before = _account(clinic_a)
    response = _save_keys(clinic_a, pk=pk, sk=sk)
    assert response.status_code == 400
    page = response.content.decode()
    assert message in page and f'id="id_{field}_error"' in page
    assert admin_api.keys_seen == []
    after = _account(clinic_a)
    assert (after.publishable_key, after.secret_key) == (before.publishable_key, before.secret_key)
    assert not AuditEvent.objects.filter(action__startswith="settings.").exists()


@pytest.mark.parametrize(
    ("refuse", "livemode", "message"),
    [
        ("authentication", False, "Stripe refused this secret key"),
        ("permission", False, "may not read the account balance"),
        ("unavailable", False, "Stripe could not be reached to check the keys. Nothing was saved"),
        ("", True, "Stripe says this secret key is a live-mode key, not test mode."),
    ],
)
def test_keys_the_processor_refuses_are_not_saved(
    clinic_a: Clinic, admin_api: FakeAdmin, refuse: str, livemode: bool, message: str
):
    admin_api.refuse, admin_api.livemode = refuse, livemode
    response = _save_keys(clinic_a)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert admin_api.keys_seen == [SK]
    assert _account(clinic_a).secret_key == "sk_test_alpha"
    assert not AuditEvent.objects.filter(action__startswith="settings.").exists()


def test_live_keys_are_accepted_in_production(clinic_a: Clinic, admin_api: FakeAdmin, settings):
    settings.PRODUCTION = True
    admin_api.livemode = True
    assert _save_keys(clinic_a, pk="pk_live_51Abc", sk="sk_live_51Abcdefgh").status_code == 302
    assert _account(clinic_a).livemode


def test_without_the_endpoint_api_the_page_guides_the_paste(clinic_a: Clinic, admin_api: FakeAdmin):
    """A new clinic (no webhook yet) whose processor cannot register endpoints by API."""
    _new_clinic(clinic_a)
    admin_api.endpoints_api = False
    page = _save_keys(clinic_a, follow=True).content.decode()
    assert "could not register the webhook here" in page
    assert f"/webhooks/stripe/{clinic_a.tenant.public_id}/</code>" in page
    for event in WEBHOOK_EVENTS:
        assert f"<code>{event}</code>" in page
    assert "Not set up" in page
    assert _account(clinic_a).webhook_secret == ""
    assert not AuditEvent.objects.filter(action="settings.webhook_registered").exists()

    client = clinic_a.client_as(ADMIN)
    url = reverse("clinic_settings:webhook-secret")
    refused = client.post(url, {"webhook_secret": SK})
    assert refused.status_code == 400 and "This is an API key" in refused.content.decode()
    refused = client.post(url, {"webhook_secret": "not a secret"})
    assert refused.status_code == 400 and "starts with whsec_" in refused.content.decode()
    assert _account(clinic_a).webhook_secret == ""

    assert client.post(url, {"webhook_secret": "whsec_pasted_by_hand_4321"}).status_code == 302
    account = _account(clinic_a)
    assert account.webhook_secret == "whsec_pasted_by_hand_4321" and account.webhook_secret_set_at
    secret_event = AuditEvent.objects.get(action="settings.webhook_secret_changed")
    assert secret_event.details == {"webhook_secret": "changed", "method": "by_hand"}
    page = client.get(reverse("clinic_settings:processor")).content.decode()
    assert "Signing secret entered by hand" in page and "ends …4321" in page and "whsec_pasted" not in page


def test_webhooks_are_refused_while_no_signing_secret_is_set(clinic_a: Clinic):
    with tenant_scope(clinic_a.tenant):
        account = ProcessorAccount.objects.get(tenant=clinic_a.tenant)
        account.webhook_secret = ""
        account.save()
        with pytest.raises(WebhookRejected, match="no webhook signing secret"):
            webhook_receive(tenant=clinic_a.tenant, payload=b"{}", signature_header="t=1,v1=00")


def test_a_signing_secret_needs_keys_first(clinic_a: Clinic):
    _new_clinic(clinic_a)
    response = clinic_a.client_as(ADMIN).post(
        reverse("clinic_settings:webhook-secret"), {"webhook_secret": "whsec_pasted_by_hand_4321"}
    )
    assert response.status_code == 400 and "Save the Stripe keys first." in response.content.decode()


def test_register_again_replaces_the_signing_secret_and_deletes_the_old_endpoint(
    clinic_a: Clinic, admin_api: FakeAdmin
):
    client = clinic_a.client_as(ADMIN)
    response = client.post(reverse("clinic_settings:webhook-register"), follow=True)
    assert "webhook endpoint is registered" in response.content.decode()
    assert _account(clinic_a).webhook_secret == "whsec_fromapi_0123456789abcd"
    assert admin_api.deleted == []  # the by-hand secret had no endpoint id
    client.post(reverse("clinic_settings:webhook-register"))
    assert _account(clinic_a).webhook_endpoint_id == "we_fake0002"
    assert admin_api.deleted == ["we_fake0001"]
    events = AuditEvent.objects.filter(action="settings.webhook_registered").order_by("sequence")
    assert [(e.details["endpoint"], e.details["replaced_endpoint"]) for e in events] == [
        ("we_fake0001", None),
        ("we_fake0002", "we_fake0001"),
    ]


# --- Against localstripe --------------------------------------------------------------------


@pytest.mark.localstripe
def test_localstripe_checks_real_keys_and_refuses_a_wrong_one(clinic_a: Clinic, localstripe):
    _new_clinic(clinic_a)
    response = _save_keys(clinic_a, follow=True)
    page = response.content.decode()
    assert "Stripe accepted the keys (test mode)" in page
    # localstripe has no webhook endpoint API: the by-hand steps are offered.
    assert "could not register the webhook here" in page
    assert _account(clinic_a).secret_key == SK and _account(clinic_a).keys_verified_at
    # localstripe answers 401 to any key but sk_ keys: a real refusal by the processor.
    refused = _save_keys(clinic_a, sk=RK)
    assert refused.status_code == 400 and "Stripe refused this secret key" in refused.content.decode()
    assert _account(clinic_a).secret_key == SK


def test_replacing_keys_of_the_same_mode_keeps_the_webhook(clinic_a: Clinic, admin_api: FakeAdmin):
    page = _save_keys(clinic_a, follow=True).content.decode()
    assert "register the endpoint again" in page
    assert admin_api.endpoints == [] and _account(clinic_a).webhook_secret == "whsec_alpha"
