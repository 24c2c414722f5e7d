"""Onboarding a clinic from the platform console, in a real browser.

Chromium (Playwright) against the live server:

1. The platform operator opens the console on the platform host, is sent to
   sign in (password, then a code from their app) and lands on Clinics.
2. They add "Lakeside Pediatrics": a reserved address is refused on its
   field with nothing saved, then the clinic is created with its first
   clinic admin's email. They give it a custom domain (shown pending, with
   its DNS record), suspend it (a patient sees "temporarily unavailable")
   and reactivate it.
3. The admin opens the emailed link (django.core.mail.outbox) on the new
   clinic's host, chooses a name and password, sets up an authenticator
   and reaches the clinic's staff dashboard as its clinic admin.

Screenshots at 1280 and 390 px wide go to test-artifacts/.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from django.core import mail

from portal.models import Tenant
from portal.tenancy.context import tenant_scope
from security.models import Membership, Role, User
from tests.conftest import live_url
from tests.e2e.test_staff_onboarding import code_at, enter_code
from tests.factories import PERSONA_PASSWORD, UserFactory, totp_code, totp_device

if TYPE_CHECKING:
    from playwright.sync_api import Page, ViewportSize

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

STEP_TIMEOUT = 15_000
ADMIN_EMAIL = "ada.admin@lakeside.example"
ADMIN_NAME = "Ada Admin"
ADMIN_PASSWORD = "Harbour-lantern-58-willow"
LINK = re.compile(r"https?://\S+/staff/team/invitations/[A-Za-z0-9_-]+/")
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1280, "height": 900}


@pytest.fixture
def page(browser_page: Page) -> Iterator[Page]:
    browser_page.set_default_timeout(STEP_TIMEOUT)
    browser_page.set_default_navigation_timeout(STEP_TIMEOUT)
    yield browser_page


@pytest.fixture
def csp_errors(page: Page) -> list[str]:
    found: list[str] = []

    def on_console(message: Any) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            found.append(message.text)

    page.on("console", on_console)
    return found


def both_widths(page: Page, screenshot: Any, label: str) -> None:
    screenshot(page, f"{label}-1280")
    page.set_viewport_size(PHONE)
    screenshot(page, f"{label}-390")
    page.set_viewport_size(DESKTOP)


def test_operator_onboards_lakeside_and_its_admin_reaches_the_dashboard(
    page, live_server, clinic_a, settings, screenshot, csp_errors
):
    settings.SETTLE_PUBLIC_PORT = int(live_server.url.rsplit(":", 1)[1])
    platform = live_url(live_server, None, "").rstrip("/")
    operator = UserFactory.create(
        email="operator@platform.example", full_name="Olive Operator", is_platform_operator=True, is_staff=True
    )
    device = totp_device(operator)

    # 1. Sign in on the platform host.
    page.goto(f"{platform}/platform/")
    page.wait_for_url(re.compile(r"/staff/login/\?next="))
    page.fill("#id_username", operator.email)
    page.fill("#id_password", PERSONA_PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"/staff/mfa/"))
    enter_code(page, totp_code(device))
    page.wait_for_url(re.compile(r"/platform/$"))
    assert "Alpha Clinic" in page.locator("#clinics").inner_text()
    both_widths(page, screenshot, "1-clinics")

    # 2. Add Lakeside Pediatrics: a reserved address first.
    page.get_by_role("link", name="Add a clinic").click()
    page.fill("#id_name", "Lakeside Pediatrics")
    page.fill("#id_slug", "www")
    page.select_option("#id_timezone", "America/Chicago")
    page.select_option("#id_currency", "USD")
    page.fill("#id_support_phone", "+1 312 555 0142")
    page.fill("#id_support_email", "billing@lakeside.example")
    page.fill("#id_admin_email", ADMIN_EMAIL)
    page.get_by_role("button", name="Add clinic").click()
    page.locator("#id_slug_error").wait_for()
    assert "is reserved" in page.locator("#id_slug_error").inner_text()
    assert not Tenant.objects.filter(name="Lakeside Pediatrics").exists()
    assert mail.outbox == []
    both_widths(page, screenshot, "2-reserved-slug")
    page.fill("#id_slug", "lakeside")
    page.get_by_role("button", name="Add clinic").click()
    page.get_by_text(f"An invitation was sent to {ADMIN_EMAIL}").wait_for()
    assert "Lakeside Pediatrics" in page.locator("h1").inner_text()
    assert ADMIN_EMAIL in page.locator("#admin-invitations").inner_text()
    both_widths(page, screenshot, "3-clinic-page")

    # A custom domain waits for its DNS record; a suspension closes the clinic's pages.
    page.get_by_role("link", name="Edit profile").click()
    page.fill("#id_custom_domain", "pay.lakeside.example")
    page.get_by_role("button", name="Save changes").click()
    page.locator("#record-name").wait_for()
    assert page.locator("#record-name").inner_text() == "_settle-verify.pay.lakeside.example"
    assert page.locator("#record-value").inner_text().startswith("settle-verify-")
    assert "Domain pending" in page.locator("#clinic-status").inner_text()
    page.fill("#id_reason", "Checking the walk-through closes the clinic")
    page.get_by_role("button", name="Suspend Lakeside Pediatrics").click()
    page.get_by_text("Lakeside Pediatrics is suspended.").wait_for()
    both_widths(page, screenshot, "4-domain-pending-and-suspended")
    patient = page.context.new_page()
    # The slug host: the custom domain is not served until verified.
    patient.goto(f"http://lakeside.localhost:{settings.SETTLE_PUBLIC_PORT}/")
    assert "Temporarily unavailable" in patient.locator("h1").inner_text()
    both_widths(patient, screenshot, "5-patient-sees-unavailable")
    patient.close()
    page.get_by_role("button", name="Reactivate Lakeside Pediatrics").click()
    page.get_by_text("Lakeside Pediatrics is active again.").wait_for()
    page.locator("nav.staff-nav").get_by_role("link", name="Clinics").click()
    assert "Lakeside Pediatrics" in page.locator("#clinics").inner_text()
    page.locator("nav.staff-nav").get_by_role("button", name="Sign out").click()

    # 3. The admin accepts from the email on the clinic's own host.
    [message] = mail.outbox
    assert message.to == [ADMIN_EMAIL]
    match = LINK.search(str(message.body))
    assert match, message.body
    link = match.group(0)
    lakeside = Tenant.objects.get(slug="lakeside")
    assert link.startswith(f"http://lakeside.localhost:{settings.SETTLE_PUBLIC_PORT}/"), link
    page.goto(link)
    page.wait_for_url(re.compile(r"/staff/team/invitations/accept/$"))
    assert "clinic admin" in page.locator("main").inner_text()
    page.fill("#id_full_name", ADMIN_NAME)
    page.fill("#id_password", ADMIN_PASSWORD)
    page.fill("#id_password_confirm", ADMIN_PASSWORD)
    page.get_by_role("button", name="Create account and continue").click()
    page.wait_for_url(re.compile(r"/staff/mfa/enrol/"))
    secret = page.locator("#totp-secret").inner_text().strip()
    page.fill("#id_otp_token", code_at(secret, time.time()))
    page.get_by_role("button", name="Confirm and continue").click()
    page.locator("#recovery-codes li").first.wait_for()
    page.get_by_role("link", name="I have saved them, continue").click()
    page.wait_for_url(re.compile(r"/staff/$"))
    assert f"Welcome, {ADMIN_NAME}" in page.locator("h1").inner_text()
    assert "Signed in to Lakeside Pediatrics as a clinic admin." in page.locator("main").inner_text()
    both_widths(page, screenshot, "6-admin-dashboard")

    user = User.objects.get(email=ADMIN_EMAIL)
    with tenant_scope(lakeside):
        assert Membership.objects.get(tenant=lakeside, user=user).role == Role.CLINIC_ADMIN
    assert csp_errors == [], csp_errors
