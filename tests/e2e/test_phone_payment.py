"""A phone payment in a real browser, against localstripe.

The front desk opens the patient's ledger, presses "Take a phone payment" on
the open statement, keys $40.00 on 4242 4242 4242 4242 into the card form
Stripe.js mounts (the same checkout.js as the patient page), lands on the
staff payment page showing channel Phone, and prints the receipt PDF. The
page carries the payment pages' strict CSP and the console shows no CSP
error. Screenshots at 1280 and 390 px go to test-artifacts/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from billing.models import LedgerEntry, Payment, PaymentChannel, PaymentStatus
from portal.tenancy.context import tenant_scope
from security.models import Role
from tests.conftest import Clinic, live_url
from tests.e2e.test_quick_pay import CARD_OK, assert_strict_csp, fill_card
from tests.e2e.test_refunds import signed_in

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.localstripe, pytest.mark.django_db(transaction=True)]

PHONE_PAGE = re.compile(r"/staff/phone-payments/[0-9a-f-]{36}/$")
PAYMENT_PAGE = re.compile(r"/staff/payments/[0-9a-f-]{36}/$")


@pytest.fixture
def page(browser_page: Page) -> Iterator[Page]:
    browser_page.set_default_timeout(15_000)
    yield browser_page


def test_front_desk_takes_40_dollars_by_phone_and_prints_the_receipt(
    page: Page, live_server: Any, clinic_a: Clinic, localstripe: Any, screenshot: Any
) -> None:
    csp_errors: list[str] = []
    page_errors: list[str] = []
    page.on(
        "console",
        lambda m: csp_errors.append(m.text) if m.type == "error" and "Content Security Policy" in m.text else None,
    )
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    base = live_url(live_server, clinic_a.tenant, "").rstrip("/")
    signed_in(page.context, clinic_a, Role.FRONT_DESK, base)

    page.goto(f"{base}/staff/patients/{clinic_a.patient.public_id}/")
    screenshot(page, "1-ledger-1280")
    with page.expect_response(lambda r: bool(PHONE_PAGE.search(r.url)) and r.request.method == "GET") as info:
        page.get_by_role("button", name=f"Take a phone payment for statement {clinic_a.statement.number}").click()
    page.wait_for_url(PHONE_PAGE)
    assert_strict_csp(info.value.headers.get("content-security-policy", ""), localstripe.base_url)
    assert info.value.headers.get("cache-control") == "no-store"
    # Stripe.js loaded (the CSP allowed it) and mounted the card form.
    page.locator("#card-element input[placeholder=number]").wait_for(state="visible")
    assert "$125.00" in page.locator("#pay-amount").inner_text()

    page.get_by_label("Another amount").check()
    page.fill("#amount-other", "40.00")
    fill_card(page, CARD_OK)
    assert page.locator("#pay-amount").inner_text().strip() == "$40.00"
    screenshot(page, "2-phone-form-1280")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "2-phone-form-390")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.locator("#pay-button").click()

    page.wait_for_url(PAYMENT_PAGE)
    assert page.locator("#payment-channel").inner_text().startswith("Phone, taken by")
    assert page.locator("#payment-status").inner_text().strip() == "Succeeded"
    main = page.locator("main").inner_text()
    assert "Payment of $40.00" in main and "Visa ending in 4242" in main
    with tenant_scope(clinic_a.tenant):
        payment = Payment.objects.select_related("checkout").get()
        assert LedgerEntry.objects.filter(payment=payment).count() == 1
    assert payment.status == PaymentStatus.SUCCEEDED and payment.amount_minor == 4000
    assert payment.channel == PaymentChannel.PHONE
    assert payment.checkout.opened_by == clinic_a.user(Role.FRONT_DESK)
    screenshot(page, "3-payment-1280")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "3-payment-390")

    # "Print receipt (PDF)": fetched from the page, as the browser would open it.
    href = page.get_by_role("link", name="Print receipt (PDF)").get_attribute("href")
    assert href == f"/staff/payments/{payment.public_id}/receipt.pdf"
    status, kind, head = page.evaluate(
        """async (url) => { const r = await fetch(url); const b = new Uint8Array(await r.arrayBuffer());
                            return [r.status, r.headers.get('content-type'), String.fromCharCode(...b.slice(0, 4))]; }""",
        f"{base}{href}",
    )
    assert (status, kind, head) == (200, "application/pdf", "%PDF")
    assert csp_errors == [], csp_errors
    assert page_errors == [], page_errors
