"""Staff password recovery in a real browser: forgot, email, new password, sign in with the code.

Chromium (Playwright) against the live server, on Alpha Clinic's host. The
front desk user is signed in in a second browser context ("at the desk"),
forgets the password elsewhere, asks for a link from the sign-in page, opens
the emailed link (django.core.mail.outbox), sets a new password, and signs in
with it and a code from the authenticator. The desk session is signed out.
Screenshots at 1280 and 390 px go to test-artifacts/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from django.core import mail

from security.models import Role
from tests.conftest import Clinic, live_url
from tests.factories import PERSONA_PASSWORD, totp_code, totp_device

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

NEW_PASSWORD = "Copper-meadow-73-lantern"
LINK = re.compile(r"https?://\S+/staff/password/reset/[A-Za-z0-9_-]+/")


@pytest.fixture
def page(browser_page: Page) -> Iterator[Page]:
    browser_page.set_default_timeout(15_000)
    yield browser_page


def sign_in(page: Page, base: str, email: str, password: str, code: str) -> None:
    page.goto(f"{base}/staff/login/")
    page.fill("#id_username", email)
    page.fill("#id_password", password)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"/staff/mfa/"))
    page.fill("#id_otp_token", code)
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(re.compile(r"/staff/$"))


def test_a_forgotten_password_is_reset_by_email_and_the_code_is_still_asked(
    page: Page, chromium_browser: Browser, live_server, clinic_a: Clinic, settings, screenshot
) -> None:
    settings.SETTLE_PUBLIC_PORT = int(live_server.url.rsplit(":", 1)[1])
    base = live_url(live_server, clinic_a.tenant, "").rstrip("/")
    user = clinic_a.user(Role.FRONT_DESK)
    device = totp_device(user)

    # Signed in at the front desk, in another browser.
    desk_context = chromium_browser.new_context(viewport={"width": 1280, "height": 900})
    desk = desk_context.new_page()
    sign_in(desk, base, user.email, PERSONA_PASSWORD, totp_code(device))

    # Elsewhere, the password is forgotten.
    page.goto(f"{base}/staff/login/")
    page.get_by_role("link", name="Forgot your password?").click()
    page.wait_for_url(re.compile(r"/staff/password/forgot/"))
    screenshot(page, "1-forgot-1280")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "1-forgot-390")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.fill("#id_email", user.email)
    page.get_by_role("button", name="Email me a link").click()
    page.locator("#reset-sent").wait_for()
    screenshot(page, "2-sent")

    [message] = mail.outbox
    match = LINK.search(str(message.body))
    assert match, message.body
    page.goto(match.group(0))
    page.wait_for_url(re.compile(r"/staff/password/reset/set/$"))
    assert user.email in page.locator("main").inner_text()
    page.fill("#id_password", "short1")
    page.fill("#id_password_confirm", "short1")
    page.get_by_role("button", name="Set new password").click()
    assert (
        "at least 12" in page.locator("main").inner_text().lower()
        or "12 characters" in page.locator("main").inner_text()
    )
    page.fill("#id_password", NEW_PASSWORD)
    page.fill("#id_password_confirm", NEW_PASSWORD)
    screenshot(page, "3-new-password-1280")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "3-new-password-390")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.get_by_role("button", name="Set new password").click()
    page.wait_for_url(re.compile(r"/staff/login/"))
    assert "Your password was changed" in page.locator("main").inner_text()
    screenshot(page, "4-signed-out")

    # The desk session ended with the reset.
    desk.goto(f"{base}/staff/")
    desk.wait_for_url(re.compile(r"/staff/login/"))
    desk_context.close()

    # The link is spent.
    page.goto(match.group(0))
    assert "This link can't be used" in page.locator("main").inner_text()

    # The new password works, and the code is still asked.
    type(device).objects.filter(pk=device.pk).update(last_t=-1)
    device.refresh_from_db()
    sign_in(page, base, user.email, NEW_PASSWORD, totp_code(device))
    screenshot(page, "5-signed-in")
