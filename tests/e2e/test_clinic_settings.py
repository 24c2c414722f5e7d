"""Clinic settings in a real browser, then a real payment on the clinic's page.

Chromium (Playwright) against the live server and localstripe, on Alpha
Clinic's host, as a clinic fresh from onboarding (no processor account):

1. The clinic admin signs in and opens Settings.
2. Processor: a publishable key pasted as the secret key is refused; good
   test keys are checked with localstripe and saved; localstripe has no
   webhook endpoint API, so the page shows the URL and events to paste and
   the admin enters the signing secret by hand.
3. Branding: a colour failing contrast is refused with its ratio; a darker
   colour and a PNG logo are saved.
4. Profile: a bad email is refused on its field; the support contacts are saved.
5. Policies: minimum payment, card-check policy, lockout length.
6. A patient looks up their statement on the clinic's page, sees the logo,
   and pays $125.00 by card through the keys just saved.

Screenshots at 1280 and 390 px wide go to test-artifacts/settings-*.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from billing.models import CardCheckPolicy, Payment, PaymentStatus, ProcessorAccount
from portal.models import Tenant
from portal.tenancy.context import tenant_scope
from security.models import Role
from tests.conftest import Clinic, artifact_path, live_url
from tests.e2e.test_quick_pay import CARD_OK, DOB, assert_receipt, fill_card, lookup, submit
from tests.e2e.test_staff_onboarding import enter_code, sign_in_password
from tests.factories import PERSONA_PASSWORD, totp_code, totp_device
from tests.portal.settings_support import png_bytes

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.localstripe, pytest.mark.django_db(transaction=True)]

STEP_TIMEOUT = 15_000
PK = "pk_test_51AlphaClinicPublishable0001"
SK = "sk_test_51AlphaClinicSecretKey00042"
WEBHOOK_SECRET = "whsec_alpha_dashboard_secret_7788"


@pytest.fixture
def page(browser_page: Page) -> Iterator[Page]:
    browser_page.set_default_timeout(STEP_TIMEOUT)
    browser_page.set_default_navigation_timeout(STEP_TIMEOUT)
    yield browser_page


@pytest.fixture
def page_errors(page: Page) -> list[str]:
    found: list[str] = []
    page.on("pageerror", lambda error: found.append(str(error)))
    page.on(
        "console",
        lambda message: (
            found.append(message.text)
            if message.type == "error" and "Content Security Policy" in message.text
            else None
        ),
    )
    return found


def shoot(page: Page, name: str) -> None:
    """Full-page screenshots at 1280 and 390 px wide."""
    for width, height in ((1280, 900), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        path = artifact_path(f"settings-{name}-{width}.png")
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 0
    page.set_viewport_size({"width": 1280, "height": 900})


def field_error(page: Page, field: str) -> str:
    return page.locator(f"#id_{field}_error").inner_text().strip()


def test_admin_connects_stripe_brands_sets_policy_and_a_patient_pays(
    page, live_server, clinic_a: Clinic, localstripe: Any, settings, tmp_path: Path, page_errors: list[str]
):
    settings.MEDIA_ROOT = tmp_path
    with tenant_scope(clinic_a.tenant):
        ProcessorAccount.objects.filter(tenant=clinic_a.tenant).delete()
    base = live_url(live_server, clinic_a.tenant, "").rstrip("/")
    admin = clinic_a.user(Role.CLINIC_ADMIN)
    device = totp_device(admin)  # the admin's authenticator app

    # 1. Sign in, open Settings from the navigation.
    sign_in_password(page, base, admin.email, PERSONA_PASSWORD)
    page.wait_for_url(re.compile(r"/staff/mfa/"))
    enter_code(page, totp_code(device))
    page.wait_for_url(re.compile(r"/staff/$"))
    page.locator("nav.staff-nav").get_by_role("link", name="Settings").click()
    page.wait_for_url(re.compile(r"/staff/settings/$"))
    assert "Not connected." in page.locator("main").inner_text()
    shoot(page, "overview-new-clinic")

    # 2. Processor keys: a wrong kind first, then good keys.
    page.get_by_role("link", name="Payments processor").first.click()
    page.fill("#id_publishable_key", PK)
    page.fill("#id_secret_key", PK)
    page.get_by_role("button", name="Check and save keys").click()
    assert "This is a publishable key" in field_error(page, "secret_key")
    shoot(page, "processor-wrong-key")

    page.fill("#id_secret_key", SK)
    page.get_by_role("button", name="Check and save keys").click()
    page.get_by_text("Stripe accepted the keys (test mode)").wait_for()
    assert "could not register the webhook here" in page.locator(".messages").inner_text()
    webhook_url = page.locator("#webhook-url").inner_text().strip()
    assert webhook_url.endswith(f"/webhooks/stripe/{clinic_a.tenant.public_id}/")
    assert "payment_intent.succeeded" in page.locator("#webhook-events").inner_text()
    assert "ends …0042" in page.locator("#secret-key-status").inner_text()
    assert SK not in page.content()
    page.fill("#id_webhook_secret", WEBHOOK_SECRET)
    page.get_by_role("button", name="Save signing secret").click()
    page.get_by_text("Webhook signing secret saved.").wait_for()
    assert "ends …7788" in page.locator("#webhook-secret-status").inner_text()
    assert WEBHOOK_SECRET not in page.content()
    shoot(page, "processor-connected")

    # 3. Branding: a pale colour is refused, a darker one and a logo are saved.
    page.locator(".settings-nav").get_by_role("link", name="Branding").click()
    page.fill("#id_brand_colour", "#ffcc00")
    page.get_by_role("button", name="Save branding").click()
    assert "contrast ratio of 1.51:1" in field_error(page, "brand_colour")
    shoot(page, "branding-refused")
    logo = tmp_path / "logo.png"
    logo.write_bytes(png_bytes((240, 80), text="exported by a design tool"))
    page.fill("#id_brand_colour", "#0b5394")
    page.set_input_files("#id_logo", str(logo))
    page.get_by_role("button", name="Save branding").click()
    page.get_by_text("Branding saved.").wait_for()
    page.locator(".brand-preview img").wait_for()
    shoot(page, "branding-saved")

    # 4. Profile: the support phone patients see.
    page.locator(".settings-nav").get_by_role("link", name="Profile and support").click()
    page.fill("#id_support_phone", "+1 555 0100")
    page.fill("#id_support_email", "not-an-email")
    page.get_by_role("button", name="Save profile").click()
    assert "Enter a valid email address." in field_error(page, "support_email")
    page.fill("#id_support_email", "billing@alpha.example")
    page.get_by_role("button", name="Save profile").click()
    page.get_by_text("Profile saved.").wait_for()
    shoot(page, "profile-saved")

    # 5. Policies.
    page.locator(".settings-nav").get_by_role("link", name="Policies").click()
    page.fill("#id_minimum_payment", "5.00")
    page.check(f"input[name=card_check_policy][value={CardCheckPolicy.ACCEPT}]")
    page.fill("#id_lookup_lockout_minutes", "45")
    page.get_by_role("button", name="Save policies").click()
    page.get_by_text("Policies saved.").wait_for()
    assert "card check policy: flag → accept" in page.locator(".settings-changes").inner_text()
    shoot(page, "policies-saved")
    page.locator(".settings-nav").get_by_role("link", name="Overview").click()
    shoot(page, "overview-done")

    tenant = Tenant.objects.get(pk=clinic_a.tenant.pk)
    assert (tenant.brand_colour, tenant.minimum_payment_minor, tenant.lookup_lockout_minutes) == ("#0b5394", 500, 45)
    with tenant_scope(tenant):
        account = ProcessorAccount.objects.get(tenant=tenant)
        assert (account.publishable_key, str(account.secret_key)) == (PK, SK)
        assert account.card_check_policy == CardCheckPolicy.ACCEPT

    # 6. A patient pays on the clinic's page, through the keys just saved.
    patient = page.context.browser.new_context(viewport={"width": 390, "height": 844})  # type: ignore[union-attr]
    patient_page = patient.new_page()
    patient_page.set_default_timeout(STEP_TIMEOUT)
    try:
        lookup(patient_page, live_server, clinic_a, number=clinic_a.statement.number, dob=DOB)
        patient_page.locator("#card-element input[placeholder=number]").wait_for(state="visible")
        assert patient_page.locator("header img.brand-logo").is_visible()
        assert "+1 555 0100" in patient_page.locator("footer").inner_text()
        patient_page.screenshot(path=str(artifact_path("settings-patient-pay-390.png")), full_page=True)
        fill_card(patient_page, CARD_OK)
        submit(patient_page)
        assert_receipt(patient_page, amount="$125.00", remaining="$0.00")
        patient_page.screenshot(path=str(artifact_path("settings-patient-receipt-390.png")), full_page=True)
    finally:
        patient.close()
    with tenant_scope(tenant):
        (payment,) = Payment.objects.filter(statement=clinic_a.statement)
        assert payment.status == PaymentStatus.SUCCEEDED and payment.card_last4 == "4242"
    assert page_errors == []
