"""The whole onboarding story in a real browser: no shell from new clinic to first payment.

Chromium (Playwright) against the live server and localstripe:

1. The platform operator signs in on the platform host and adds "Lakeside
   Pediatrics" with its first clinic admin's email.
2. The admin opens the emailed invitation on the clinic's own host, sets a
   password, sets up an authenticator and reaches the dashboard.
3. In Settings the admin connects the processor (keys checked with
   localstripe; the signing secret pasted, as localstripe has no endpoint API)
   and sets the brand colour.
4. A statement is issued to a patient (as the statement import will), and the
   patient pays it by card on lakeside.localhost: the receipt shows.

Screenshots at 1280 and 390 px wide go to test-artifacts/onboarding-story-*.png.
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from django.core import mail

from billing.models import Payment, PaymentStatus
from billing.services.statements import patient_create, statement_issue
from portal.models import Tenant
from portal.tenancy.context import tenant_scope
from tests.conftest import artifact_path, live_url
from tests.e2e.test_quick_pay import CARD_OK, fill_card, submit
from tests.e2e.test_staff_onboarding import code_at, enter_code
from tests.factories import PERSONA_PASSWORD, UserFactory, totp_code, totp_device

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.localstripe, pytest.mark.django_db(transaction=True)]

STEP_TIMEOUT = 15_000
ADMIN_EMAIL = "lee.admin@lakeside.example"
ADMIN_PASSWORD = "Meadow-copper-64-harbour"
INVITATION = re.compile(r"https?://\S+/staff/team/invitations/[A-Za-z0-9_-]+/")
PK = "pk_test_51LakesidePediatrics0001"
SK = "sk_test_51LakesidePediatricsKey0077"
WEBHOOK_SECRET = "whsec_lakeside_dashboard_5511"
DOB = datetime.date(2015, 6, 9)


@pytest.fixture
def page(browser_page: Page) -> Iterator[Page]:
    browser_page.set_default_timeout(STEP_TIMEOUT)
    browser_page.set_default_navigation_timeout(STEP_TIMEOUT)
    yield browser_page


def shoot(page: Page, name: str) -> None:
    for width, height in ((1280, 900), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=str(artifact_path(f"onboarding-story-{name}-{width}.png")), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def test_a_clinic_is_onboarded_and_takes_its_first_payment_without_a_shell(
    page: Page, live_server: Any, localstripe: Any, settings: Any
) -> None:
    port = int(live_server.url.rsplit(":", 1)[1])
    settings.SETTLE_PUBLIC_PORT = port
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    operator = UserFactory.create(email="olive@platform.example", is_platform_operator=True, is_staff=True)
    device = totp_device(operator)

    # 1. The operator adds the clinic and invites its admin.
    page.goto(live_url(live_server, None, "/platform/"))
    page.fill("#id_username", operator.email)
    page.fill("#id_password", PERSONA_PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"/staff/mfa/"))
    enter_code(page, totp_code(device))
    page.wait_for_url(re.compile(r"/platform/$"))
    page.get_by_role("link", name="Add a clinic").click()
    page.fill("#id_name", "Lakeside Pediatrics")
    page.fill("#id_slug", "lakeside")
    page.select_option("#id_timezone", "America/Chicago")
    page.fill("#id_support_phone", "+1 312 555 0142")
    page.fill("#id_admin_email", ADMIN_EMAIL)
    page.get_by_role("button", name="Add clinic").click()
    page.get_by_text(f"An invitation was sent to {ADMIN_EMAIL}").wait_for()
    shoot(page, "1-clinic-added")
    page.locator("nav.staff-nav").get_by_role("button", name="Sign out").click()

    # 2. The admin accepts on the clinic's host and sets up an authenticator.
    [invitation] = mail.outbox
    link = INVITATION.search(str(invitation.body))
    assert link, invitation.body
    assert link.group(0).startswith(f"http://lakeside.localhost:{port}/")
    page.goto(link.group(0))
    page.fill("#id_full_name", "Lee Admin")
    page.fill("#id_password", ADMIN_PASSWORD)
    page.fill("#id_password_confirm", ADMIN_PASSWORD)
    page.get_by_role("button", name="Create account and continue").click()
    page.wait_for_url(re.compile(r"/staff/mfa/enrol/"))
    secret = page.locator("#totp-secret").inner_text().strip()
    page.fill("#id_otp_token", code_at(secret, time.time()))
    page.get_by_role("button", name="Confirm and continue").click()
    page.get_by_role("link", name="I have saved them, continue").click()
    page.wait_for_url(re.compile(r"/staff/$"))

    # 3. Settings: the processor, then the brand colour.
    page.locator("nav.staff-nav").get_by_role("link", name="Settings").click()
    page.get_by_role("link", name="Payments processor").first.click()
    page.fill("#id_publishable_key", PK)
    page.fill("#id_secret_key", SK)
    page.get_by_role("button", name="Check and save keys").click()
    page.get_by_text("Stripe accepted the keys (test mode)").wait_for()
    page.fill("#id_webhook_secret", WEBHOOK_SECRET)
    page.get_by_role("button", name="Save signing secret").click()
    page.get_by_text("Webhook signing secret saved.").wait_for()
    shoot(page, "2-processor-connected")
    page.locator(".settings-nav").get_by_role("link", name="Branding").click()
    page.fill("#id_brand_colour", "#0b5394")
    page.get_by_role("button", name="Save branding").click()
    page.get_by_text("Branding saved.").wait_for()

    # 4. A statement arrives (as an import would) and the patient pays it.
    lakeside = Tenant.objects.get(slug="lakeside")
    with tenant_scope(lakeside):
        patient = patient_create(
            tenant=lakeside, account_number="LP-0001", first_name="Sam", last_name="Rivers", date_of_birth=DOB
        )
        statement_issue(
            tenant=lakeside,
            patient=patient,
            number="LP-5001",
            statement_date=datetime.date(2026, 11, 20),
            due_date=datetime.date(2026, 12, 20),
            amount_due_minor=8_450,
            summary="Well-child visit",
        )
    visitor = page.context.browser.new_context(viewport={"width": 390, "height": 844})  # type: ignore[union-attr]
    patient_page = visitor.new_page()
    patient_page.set_default_timeout(STEP_TIMEOUT)
    try:
        patient_page.goto(f"http://lakeside.localhost:{port}/")
        patient_page.fill("#id_statement_number", "LP-5001")
        patient_page.fill("#id_date_of_birth", DOB.isoformat())
        patient_page.get_by_role("button", name="Find my bill").click()
        patient_page.locator("#card-element input[placeholder=number]").wait_for(state="visible")
        fill_card(patient_page, CARD_OK)
        submit(patient_page)
        patient_page.get_by_text("Thank you, your payment was received").wait_for()
        assert "$84.50" in patient_page.locator("main").inner_text()
        patient_page.screenshot(path=str(artifact_path("onboarding-story-3-receipt-390.png")), full_page=True)
    finally:
        visitor.close()
    with tenant_scope(lakeside):
        (payment,) = Payment.objects.all()
        assert payment.status == PaymentStatus.SUCCEEDED and payment.amount_minor == 8_450
    assert errors == []
