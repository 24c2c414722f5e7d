"""Staff onboarding in a real browser: invitation, authenticator set-up, sign-in, lockout.

Chromium (Playwright) against the live server, on Alpha Clinic's host:

1. The clinic admin signs in (password, then a code from their app) and
   invites a billing manager from the team page.
2. The invitee opens the emailed link (django.core.mail.outbox), chooses a
   name and password, sets up an authenticator (the secret is read from the
   page's #totp-secret, the code computed as an app would) and sees ten
   recovery codes.
3. They sign out and back in with password and a fresh code (a code's time
   step cannot be used twice: the next step's code is used, which the
   server's one-step tolerance accepts).
4. Lockout: wrong passwords and wrong codes count together; the tenth
   failure shows "Signing in is locked". django-otp doubles its wait after
   each wrong code (1 s, 2 s, ...), so most failures are wrong passwords and
   the last few are wrong codes.

Screenshots of each step go to test-artifacts/.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from django.core import mail
from django_otp.oath import TOTP

from portal.tenancy.context import tenant_scope
from security.models import Membership, Role, User
from tests.conftest import Clinic, live_url
from tests.factories import PERSONA_PASSWORD, totp_code, totp_device

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

STEP_TIMEOUT = 15_000
INVITEE_EMAIL = "bea.biller@example.org"
INVITEE_NAME = "Bea Biller"
INVITEE_PASSWORD = "Invoice-lantern-73-meadow"
TOTP_STEP = 30
LINK = re.compile(r"https?://\S+/staff/team/invitations/[A-Za-z0-9_-]+/")
WRONG_PASSWORDS = 7  # then three wrong codes: ten failures in all


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


def code_at(secret_base32: str, unix_time: float) -> str:
    """What an authenticator app shows at `unix_time` for a secret typed in from the page."""
    key = base64.b32decode(secret_base32 + "=" * (-len(secret_base32) % 8))
    generator = TOTP(key, step=TOTP_STEP, t0=0, digits=6, drift=0)
    generator.time = unix_time
    return str(generator.token()).zfill(6)


def sign_in_password(page: Page, base: str, email: str, password: str) -> None:
    page.goto(f"{base}/staff/login/")
    page.fill("#id_username", email)
    page.fill("#id_password", password)
    page.get_by_role("button", name="Continue").click()


def enter_code(page: Page, code: str) -> None:
    page.fill("#id_otp_token", code)
    page.get_by_role("button", name="Verify").click()


def sign_out(page: Page) -> None:
    page.locator("nav.staff-nav").get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/staff/login/"))


def test_invited_billing_manager_sets_up_mfa_signs_in_and_gets_locked_out(
    page, live_server, clinic_a: Clinic, settings, screenshot, csp_errors
):
    # The emailed link names the clinic's public port: here, the live server's.
    settings.SETTLE_PUBLIC_PORT = int(live_server.url.rsplit(":", 1)[1])
    base = live_url(live_server, clinic_a.tenant, "").rstrip("/")
    admin = clinic_a.user(Role.CLINIC_ADMIN)
    admin_device = totp_device(admin)

    # 1. The admin signs in and invites.
    sign_in_password(page, base, admin.email, PERSONA_PASSWORD)
    page.wait_for_url(re.compile(r"/staff/mfa/"))
    enter_code(page, totp_code(admin_device))
    page.wait_for_url(re.compile(r"/staff/$"))
    page.goto(f"{base}/staff/team/")
    page.fill("#id_email", INVITEE_EMAIL)
    page.select_option("#id_role", Role.BILLING_MANAGER.value)
    page.get_by_role("button", name="Send invitation").click()
    page.get_by_text(f"Invitation sent to {INVITEE_EMAIL}").wait_for()
    assert INVITEE_EMAIL in page.locator("#invitations").inner_text()
    screenshot(page, "1-invited")
    page.locator("#members tr", has_text="front_desk@alpha.example").get_by_role("link", name="Manage").click()
    page.get_by_role("button", name="Reset authenticator").wait_for()
    screenshot(page, "1-member")
    sign_out(page)

    [message] = mail.outbox
    assert message.to == [INVITEE_EMAIL]
    match = LINK.search(str(message.body))
    assert match, message.body
    link = match.group(0)
    assert link.startswith(base), (link, base)

    # 2. The invitee accepts and sets up an authenticator.
    page.goto(link)
    page.wait_for_url(re.compile(r"/staff/team/invitations/accept/$"))
    assert "billing manager" in page.locator("main").inner_text()
    page.fill("#id_full_name", INVITEE_NAME)
    page.fill("#id_password", INVITEE_PASSWORD)
    page.fill("#id_password_confirm", INVITEE_PASSWORD)
    screenshot(page, "2-accept")
    page.get_by_role("button", name="Create account and continue").click()
    page.wait_for_url(re.compile(r"/staff/mfa/enrol/"))
    secret = page.locator("#totp-secret").inner_text().strip()
    assert re.fullmatch(r"[A-Z2-7]+", secret), secret
    screenshot(page, "3-enrol")
    enrolled_at = time.time()
    page.fill("#id_otp_token", code_at(secret, enrolled_at))
    page.get_by_role("button", name="Confirm and continue").click()
    codes = page.locator("#recovery-codes li")
    codes.first.wait_for()
    assert codes.count() == 10
    screenshot(page, "4-recovery-codes")
    page.get_by_role("link", name="I have saved them, continue").click()
    page.wait_for_url(re.compile(r"/staff/$"))
    assert f"Welcome, {INVITEE_NAME}" in page.locator("h1").inner_text()
    assert "Signed in to Alpha Clinic as a billing manager." in page.locator("main").inner_text()

    user = User.objects.get(email=INVITEE_EMAIL)
    with tenant_scope(clinic_a.tenant):
        assert Membership.objects.get(tenant=clinic_a.tenant, user=user).role == Role.BILLING_MANAGER
    sign_out(page)

    # 3. Signing in again: password, then the code of the next time step (the
    # enrolment's step is spent; the server accepts one step ahead).
    sign_in_password(page, base, INVITEE_EMAIL, INVITEE_PASSWORD)
    page.wait_for_url(re.compile(r"/staff/mfa/"))
    next_step = (int(enrolled_at) // TOTP_STEP + 1) * TOTP_STEP
    enter_code(page, code_at(secret, max(next_step, time.time())))
    page.wait_for_url(re.compile(r"/staff/$"))
    assert f"Welcome, {INVITEE_NAME}" in page.locator("h1").inner_text()
    screenshot(page, "5-signed-in-again")
    sign_out(page)

    # 4. Failures of both factors count together; the tenth locks.
    for n in range(WRONG_PASSWORDS):
        sign_in_password(page, base, INVITEE_EMAIL, f"not-my-password-{n}")
        page.get_by_text("That email and password do not match an account.").wait_for()
    sign_in_password(page, base, INVITEE_EMAIL, INVITEE_PASSWORD)
    page.wait_for_url(re.compile(r"/staff/mfa/"))
    locked = submit_wrong_codes_until_locked(page, secret)
    assert locked <= 10 - WRONG_PASSWORDS, f"locked only after {locked} wrong codes"
    assert "Signing in is locked" in page.locator("h1").inner_text()
    assert "A clinic admin can unlock your account sooner" in page.locator("main").inner_text()
    screenshot(page, "6-locked-out")

    # Even the right password is refused now.
    sign_in_password(page, base, INVITEE_EMAIL, INVITEE_PASSWORD)
    page.get_by_role("heading", name="Signing in is locked").wait_for()
    assert csp_errors == [], csp_errors


def submit_wrong_codes_until_locked(page: Page, secret: str, *, limit: int = 10) -> int:
    """Enter wrong codes, waiting out django-otp's back-off; returns how many were counted."""
    counted = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        enter_code(page, wrong_code(secret))
        heading = page.locator("h1").inner_text()
        if "Signing in is locked" in heading:
            return counted + 1
        text = page.locator("main").inner_text()
        if "Wait a few seconds" in text:
            time.sleep(1)  # throttled: not counted, try again
            continue
        assert "That code did not match" in text, text
        counted += 1
        assert counted < limit, "ten wrong codes and still not locked"
    raise AssertionError("not locked out within a minute")


def wrong_code(secret: str) -> str:
    """A six-digit code that is none of the codes the server would accept right now."""
    now = time.time()
    valid = {code_at(secret, now + offset * TOTP_STEP) for offset in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)
