"""Refund with approval in a real browser, against localstripe.

A patient's payment goes through localstripe for real (the checkout's own
services). Then, in Chromium, the front desk asks to refund part of it from
the payment page; a billing manager, in a second browser context, approves
it from the refund queue; the processor (localstripe) confirms at once, and
the patient's ledger shows the refund. The refund receipt page and its PDF
exist. Screenshots at 1280 and 390 px go to test-artifacts/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from django.conf import settings as django_settings
from django.test import Client

from billing.models import Payment
from billing.refund_models import Refund, RefundStatus
from portal.tenancy.context import tenant_scope
from security.models import Role
from tests.billing.test_stripe_localstripe import browser_confirm_setup
from tests.conftest import Clinic, live_url, login_verified, tenant_host

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

pytestmark = [pytest.mark.e2e, pytest.mark.localstripe, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(browser_page: Page) -> Iterator[Page]:
    browser_page.set_default_timeout(15_000)
    yield browser_page


def signed_in(context: BrowserContext, clinic: Clinic, role: str, base: str) -> None:
    """Give the browser context a verified staff session (as after password + code)."""
    client = Client(HTTP_HOST=tenant_host(clinic.tenant))
    login_verified(client, clinic.user(role))
    cookie = client.cookies[django_settings.SESSION_COOKIE_NAME]
    context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": base}])


def pay_for_real(clinic: Clinic, base_api: str) -> Payment:
    """The patient pays $80.00 of the statement through localstripe, as the checkout does."""
    from billing.services.checkout import checkout_card_setup, checkout_open, payment_submit

    with tenant_scope(clinic.tenant):
        checkout = checkout_open(tenant=clinic.tenant, statement=clinic.statement)
        setup = checkout_card_setup(tenant=clinic.tenant, checkout=checkout)
        browser_confirm_setup(base_api, setup.client_secret, "4242424242424242")
        result = payment_submit(
            tenant=clinic.tenant,
            checkout=checkout,
            amount_text="80.00",
            setup_intent_id=setup.setup_intent_id,
            ip="127.0.0.1",
            session_key="e2e-refund",
        )
        assert result.payment is not None, result
        payment = Payment.objects.get(pk=result.payment.pk)
    assert payment.status == "succeeded", payment.status
    return payment


def test_front_desk_asks_a_billing_manager_approves_and_the_ledger_shows_it(
    page: Page, chromium_browser: Browser, live_server, clinic_a: Clinic, localstripe, screenshot
) -> None:
    base = live_url(live_server, clinic_a.tenant, "").rstrip("/")
    payment = pay_for_real(clinic_a, str(localstripe.base_url))

    # The front desk opens the payment and asks for a partial refund.
    signed_in(page.context, clinic_a, Role.FRONT_DESK, base)
    page.goto(f"{base}/staff/payments/{payment.public_id}/")
    assert "Visa ending in 4242" in page.locator("main").inner_text()
    page.fill("#id_amount", "25.00")
    page.select_option("#id_reason", "overpayment")
    page.fill("#id_note", "Paid the copay twice")
    screenshot(page, "1-request-1280")
    page.get_by_role("button", name="Refund", exact=True).click()
    page.get_by_text("waits for a billing manager's approval").wait_for()
    assert "Waiting for approval" in page.locator("#refunds").inner_text()
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "2-requested-390")

    # A billing manager approves it in another browser.
    manager_context = chromium_browser.new_context(viewport={"width": 1280, "height": 900})
    manager = manager_context.new_page()
    signed_in(manager_context, clinic_a, Role.BILLING_MANAGER, base)
    manager.goto(f"{base}/staff/refunds/")
    assert "Paid the copay twice" in manager.locator("#pending").inner_text()
    screenshot(manager, "3-queue-1280")
    manager.get_by_role("button", name="Approve").click()
    manager.get_by_text("refunded. The processor confirmed it").wait_for()
    with tenant_scope(clinic_a.tenant):
        refund = Refund.objects.get()
    assert refund.status == RefundStatus.SUCCEEDED and str(refund.processor_refund_id).startswith("re_")

    # The ledger shows the refund; the receipt and its PDF exist.
    manager.goto(f"{base}/staff/patients/{clinic_a.patient.public_id}/")
    ledger = manager.locator("main").inner_text()
    assert "Refund" in ledger and "$25.00" in ledger
    screenshot(manager, "4-ledger-1280")
    manager.goto(f"{base}/staff/payments/{payment.public_id}/")
    manager.get_by_role("link", name=refund.receipt_number).click()
    manager.wait_for_url(re.compile(r"/staff/refunds/.+/receipt/$"))
    screenshot(manager, "5-receipt-1280")
    # Chromium resolves *.localhost itself; fetch the PDF from the page, as the browser would.
    status, head = manager.evaluate(
        """async (url) => { const r = await fetch(url); const b = new Uint8Array(await r.arrayBuffer());
                            return [r.status, String.fromCharCode(...b.slice(0, 4))]; }""",
        f"{base}/staff/refunds/{refund.public_id}/receipt.pdf",
    )
    assert (status, head) == (200, "%PDF")
    manager.set_viewport_size({"width": 390, "height": 844})
    screenshot(manager, "5-receipt-390")
    manager_context.close()
