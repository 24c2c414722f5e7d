"""Payments search, CSV and a write-off with approval, in a real browser.

In Chromium, a billing manager filters the payment list, downloads the
filtered CSV (read back from the download), then asks to write off more of
a statement than their limit allows from the patient's ledger page; a
clinic admin, in a second browser context, approves it on the approvals
page; the ledger shows the adjustment and the lower balance. Screenshots at
1280 and 390 px go to test-artifacts/.
"""

from __future__ import annotations

import csv
import datetime
import io
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from audit.models import AuditEvent
from billing.adjustment_models import Adjustment, AdjustmentStatus
from portal.tenancy.context import tenant_scope
from security.models import Role
from tests.billing.test_payment_list import pay
from tests.conftest import Clinic, live_url
from tests.e2e.test_refunds import signed_in

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(browser_page: Page) -> Iterator[Page]:
    browser_page.set_default_timeout(15_000)
    yield browser_page


def test_billing_manager_filters_downloads_and_asks_a_write_off_a_clinic_admin_approves(
    page: Page, chromium_browser: Browser, live_server, clinic_a: Clinic, screenshot
) -> None:
    base = live_url(live_server, clinic_a.tenant, "").rstrip("/")
    yesterday = datetime.datetime.now(tz=datetime.UTC) - datetime.timedelta(days=1)
    wanted = pay(clinic_a, amount_minor=4_000, card_last4="1881", at=yesterday)
    pay(clinic_a, amount_minor=2_000, card_last4="4242", at=yesterday)
    pay(clinic_a, amount_minor=9_900, card_last4="1881", at=yesterday - datetime.timedelta(days=40))

    # The billing manager filters the payments: card 1881, last 30 days.
    signed_in(page.context, clinic_a, Role.BILLING_MANAGER, base)
    page.goto(f"{base}/staff/payments/")
    since = (datetime.date.today() - datetime.timedelta(days=30)).isoformat()
    page.fill("#id_date_from", since)
    page.fill("#id_last4", "1881")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/staff/payments/?*last4=1881*")
    table = page.locator("#payments").inner_text()
    assert "$40.00" in table and "$20.00" not in table and "$99.00" not in table
    assert "1 payment" in page.locator("#results-heading").inner_text()
    screenshot(page, "1-payments-1280")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "1-payments-390")
    page.set_viewport_size({"width": 1280, "height": 900})

    # The CSV of that filtered list, read back from the download.
    with page.expect_download() as info:
        page.get_by_role("link", name="Download CSV").click()
    download = info.value
    assert download.suggested_filename.startswith("payments-") and download.suggested_filename.endswith(".csv")
    header, *rows = list(csv.reader(io.StringIO(download.path().read_text(encoding="utf-8"))))
    assert len(rows) == 1
    row = dict(zip(header, rows[0], strict=True))
    assert row["Payment id"] == str(wanted.public_id) and row["Amount"] == "40.00" and row["Card last 4"] == "1881"
    assert row["Patient"] == clinic_a.patient.display_name
    assert AuditEvent.objects.filter(action="payment.list_exported").count() == 1

    # A write-off above the billing manager's $50.00 limit, from the ledger page.
    page.goto(f"{base}/staff/patients/{clinic_a.patient.public_id}/")
    page.get_by_text("Adjust balance").first.click()
    prefix = f"#adj-{clinic_a.statement.public_id}-"
    page.select_option(f"{prefix}direction", "decrease")
    page.fill(f"{prefix}amount", "75.00")
    page.select_option(f"{prefix}reason", label="Charity care")
    page.fill(f"{prefix}note", "Sliding-scale form on file")
    screenshot(page, "2-adjust-1280")
    page.get_by_role("button", name="Adjust balance").click()
    page.get_by_text("waits for approval").wait_for()
    assert "Waiting for approval" in page.locator("#adjustments").inner_text()
    assert page.locator("#patient-balance").inner_text() == "$125.00"
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "3-requested-390")

    # A clinic admin approves it in another browser.
    admin_context = chromium_browser.new_context(viewport={"width": 1280, "height": 900})
    admin = admin_context.new_page()
    signed_in(admin_context, clinic_a, Role.CLINIC_ADMIN, base)
    admin.goto(f"{base}/staff/refunds/")
    pending = admin.locator("#pending-adjustments").inner_text()
    assert "Sliding-scale form on file" in pending and "-$75.00" in pending
    screenshot(admin, "4-approvals-1280")
    admin.set_viewport_size({"width": 390, "height": 844})
    screenshot(admin, "4-approvals-390")
    admin.set_viewport_size({"width": 1280, "height": 900})
    admin.locator("#pending-adjustments").get_by_role("button", name="Approve").click()
    admin.get_by_text("Approved: lower statement").wait_for()
    with tenant_scope(clinic_a.tenant):
        adjustment = Adjustment.objects.get()
    assert adjustment.status == AdjustmentStatus.APPLIED

    # The ledger shows it.
    page.reload()
    assert page.locator("#patient-balance").inner_text() == "$50.00"
    ledger = page.locator("#ledger").inner_text()
    assert "Adjustment" in ledger and "-$75.00" in ledger and "Charity care" in ledger
    screenshot(page, "5-ledger-390")
    page.set_viewport_size({"width": 1280, "height": 900})
    screenshot(page, "5-ledger-1280")
    admin_context.close()
