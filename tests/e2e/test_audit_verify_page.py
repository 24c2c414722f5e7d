"""The compliance officer's verify page in a real browser: the published key, and a verification
that names the anchored checkpoint it reached. Screenshots at 1280 and 390 px go to test-artifacts/."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from audit.services.integrity import chain_for, checkpoint_sign
from audit.signing import ProviderSigner
from security.crypto.providers import get_signing_provider
from security.models import Role
from tests.audit.conftest import fill
from tests.conftest import Clinic, live_url
from tests.e2e.test_staff_onboarding import enter_code, sign_in_password
from tests.factories import PERSONA_PASSWORD, totp_code, totp_device

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_officer_downloads_the_signing_key_and_verifies_against_the_anchors(
    browser_page: Page, live_server, clinic_a: Clinic, screenshot, tmp_path: Path
):
    page = browser_page
    fill(clinic_a.tenant, 6)
    chain = chain_for(clinic_a.tenant)
    assert chain is not None and checkpoint_sign(chain=chain) is not None
    key = ProviderSigner(get_signing_provider()).public_key
    base = live_url(live_server, clinic_a.tenant, "").rstrip("/")
    officer = clinic_a.user(Role.COMPLIANCE_OFFICER)
    device = totp_device(officer)
    sign_in_password(page, base, officer.email, PERSONA_PASSWORD)
    page.wait_for_url(re.compile(r"/staff/mfa/"))
    enter_code(page, totp_code(device))
    page.wait_for_url(re.compile(r"/staff/$"))

    page.goto(f"{base}/staff/audit/verify/")
    assert key.fingerprint in page.locator("main").inner_text()
    page.get_by_text("Show the key (PEM)").click()
    assert "BEGIN PUBLIC KEY" in page.locator("pre.key-pem").first.inner_text()
    screenshot(page, "1280")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "390")
    page.set_viewport_size({"width": 1280, "height": 900})

    with page.expect_download() as downloading:
        page.get_by_role("link", name="Download public key (audit-signing.pem)").click()
    download = downloading.value
    assert download.suggested_filename == "audit-signing.pem"
    saved = tmp_path / "audit-signing.pem"
    download.save_as(str(saved))
    assert saved.read_text() == key.pem()

    page.get_by_role("button", name="Verify now").click()
    page.wait_for_url(re.compile(r"/staff/audit/verify/[0-9a-f-]+/$"))
    page.get_by_text("Chain verification: Intact").wait_for()
    assert "reaches the latest checkpoint anchored" in page.locator("main").inner_text()
    screenshot(page, "result")
