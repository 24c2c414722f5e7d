"""The audit console in a real browser, as a compliance officer uses it.

Chromium (Playwright) against the live server on Alpha Clinic's host (whose
zone is New York): the search shows UTC times under its UTC heading and
action labels, the event page the same, an export's page and history state
the days requested (both included), the patient report names the patient
to an officer allowed to read patients, and a first verification explains
why there is no signed checkpoint yet. Screenshots at 1280 and 390 px wide
go to test-artifacts/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
import time_machine

from audit.recorder import audit_record
from security.models import Role
from security.permissions import ROLE_PERMISSIONS
from tests.conftest import Clinic, live_url
from tests.factories import PERSONA_PASSWORD, totp_code, totp_device

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

OFFICER = Role.COMPLIANCE_OFFICER.value
MOMENT = datetime(2026, 10, 5, 0, 30, tzinfo=UTC)  # 20:30 the evening before in New York


@pytest.fixture
def page(browser_page: Page) -> Iterator[Page]:
    yield browser_page


def _shots(page: Page, screenshot, label: str) -> None:
    screenshot(page, f"{label}-1280")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, f"{label}-390")
    page.set_viewport_size({"width": 1280, "height": 900})


def test_officer_reads_utc_times_labels_ranges_names_and_checkpoint_wording(
    page, live_server, clinic_a: Clinic, screenshot, monkeypatch, settings, tmp_path
):
    settings.SETTLE_AUDIT_EXPORT_DIR = str(tmp_path / "exports")
    monkeypatch.setitem(ROLE_PERMISSIONS, Role.COMPLIANCE_OFFICER, ROLE_PERMISSIONS[OFFICER] | {"patients.view"})
    desk = clinic_a.user("front_desk")
    patient = str(clinic_a.patient.public_id)
    with time_machine.travel(MOMENT, tick=False):
        audit_record(
            action="patient.list_viewed",
            tenant=clinic_a.tenant,
            actor=desk,
            actor_role="front_desk",
            target_type="patient_list",
            details={"page": 1, "patients": [patient]},
        )
        audit_record(action="payment.succeeded", tenant=clinic_a.tenant, actor_role="guest", target_type="payment")
    officer = clinic_a.user(OFFICER)
    device = totp_device(officer)
    base = live_url(live_server, clinic_a.tenant, "").rstrip("/")
    page.goto(f"{base}/staff/login/")
    page.fill("#id_username", officer.email)
    page.fill("#id_password", PERSONA_PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"/staff/mfa/"))
    page.fill("#id_otp_token", totp_code(device))
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(re.compile(r"/staff/$"))

    page.goto(f"{base}/staff/audit/?date_from=2026-10-05&date_to=2026-10-05")
    table = page.locator("table.table")
    assert "2026-10-05 00:30:00" in table.inner_text() and "2026-10-04 20:30" not in table.inner_text()
    assert "Patient list viewed" in table.inner_text() and "Payment succeeded" in table.inner_text()
    _shots(page, screenshot, "search")

    page.goto(f"{base}/staff/audit/patients/{patient}/")
    assert clinic_a.patient.last_name in page.locator("h1").inner_text()
    assert "Patient list viewed" in page.locator("table.table").inner_text()
    _shots(page, screenshot, "patient-report")

    page.goto(f"{base}/staff/audit/?date_from=2026-10-05&date_to=2026-10-05&action=payment.succeeded")
    page.locator("table.table a").first.click()
    page.get_by_text("Payment succeeded").first.wait_for()
    assert "2026-10-05 00:30:00.000000" in page.locator("dl.facts").inner_text()
    _shots(page, screenshot, "event")

    page.goto(f"{base}/staff/audit/exports/")
    page.fill("#id_date_from", "2026-10-01")
    page.fill("#id_date_to", "2026-10-05")
    page.get_by_role("button", name="Request export").click()
    page.get_by_text("2026-10-01 to 2026-10-05 (UTC, both days included)").wait_for()
    _shots(page, screenshot, "export")
    page.goto(f"{base}/staff/audit/exports/")
    _shots(page, screenshot, "exports")

    page.goto(f"{base}/staff/audit/verify/")
    page.get_by_role("button", name="Verify now").click()
    page.get_by_text("No signed checkpoint exists for this chain yet").wait_for()
    _shots(page, screenshot, "verification")
