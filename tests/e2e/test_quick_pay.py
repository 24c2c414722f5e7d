"""Quick Pay end to end: Chromium, the live server and localstripe.

A patient looks a statement up on the clinic's host, pays with the card form
Stripe.js mounts (localstripe's stand-in: plain inputs), and lands on the
receipt. Each test also checks what the database recorded, and keeps a
full-page screenshot of the page it ends on in test-artifacts/e2e-*.png.

The world is tests/conftest.py's `clinic_a`: Alpha Clinic at alpha.localhost,
statement ALPHA-1001 for $125.00, patient born 1984-02-29, minimum payment
$1.00. The `localstripe` fixture points the portal (API base, Stripe.js URL
and the CSP origins) at the session's localstripe.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from billing.models import EntryKind, LedgerEntry, Payment, PaymentStatus
from billing.services.ledger import statement_balance
from portal.tenancy.context import tenant_scope
from tests.conftest import Clinic, artifact_path, live_url

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.localstripe, pytest.mark.django_db(transaction=True)]

DOB = "1984-02-29"  # tests/factories.py PatientFactory.date_of_birth
STATEMENT_TOTAL_MINOR = 12_500  # tests/factories.py StatementFactory.amount_due_minor

CARD_OK = "4242424242424242"
CARD_DECLINED_AT_CHARGE = "4000000000000341"
CARD_DECLINED_AT_SETUP = "4000000000000002"
CARD_3DS = "4000002500003155"

PAY_URL = re.compile(r"/pay/[0-9a-f-]{36}/$")
RECEIPT_URL = re.compile(r"/pay/[0-9a-f-]{36}/payments/[0-9a-f-]{36}/$")

# Playwright waits (ms). Everything is on loopback; these only bound a hang.
STEP_TIMEOUT = 15_000


# --------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------


@dataclass
class BrowserWatch:
    """What the page complained about: CSP violations and uncaught errors."""

    csp_violations: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert self.csp_violations == [], f"CSP blocked something: {self.csp_violations}"
        assert self.page_errors == [], f"uncaught errors in the page: {self.page_errors}"


@pytest.fixture
def page(browser_page: Page) -> Iterator[Page]:
    browser_page.set_default_timeout(STEP_TIMEOUT)
    browser_page.set_default_navigation_timeout(STEP_TIMEOUT)
    yield browser_page


@pytest.fixture
def watch(page: Page) -> BrowserWatch:
    found = BrowserWatch()

    def on_console(message: Any) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            found.csp_violations.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: found.page_errors.append(str(error)))
    return found


@pytest.fixture
def pay_page(
    page: Page, live_server: Any, clinic_a: Clinic, localstripe: Any, watch: BrowserWatch
) -> Callable[[], Page]:
    """open() -> the browser on step 2 (amount and card) for clinic_a's statement."""

    def open_() -> Page:
        with page.expect_response(lambda r: bool(PAY_URL.search(r.url)) and r.request.method == "GET") as info:
            lookup(page, live_server, clinic_a, number=clinic_a.statement.number, dob=DOB)
        page.wait_for_url(PAY_URL)
        assert_strict_csp(info.value.headers.get("content-security-policy", ""), localstripe.base_url)
        # Stripe.js loaded (CSP allowed it) and mounted the card form.
        page.locator("#card-element input[placeholder=number]").wait_for(state="visible")
        assert page.locator("#pay-button").is_enabled()
        return page

    return open_


def assert_strict_csp(header: str, stripe_origin: str) -> None:
    """The pay page's CSP names this run's localstripe and nothing looser."""
    directives = {part.split()[0]: part.split()[1:] for part in (p.strip() for p in header.split(";")) if part}
    assert stripe_origin in directives.get("script-src", []), header
    assert stripe_origin in directives.get("connect-src", []), header
    for directive in ("script-src", "connect-src", "default-src"):
        loose = {"'unsafe-inline'", "'unsafe-eval'", "*", "http:", "https:"} & set(directives.get(directive, []))
        assert not loose, f"{directive} allows {loose}: {header}"


def lookup(page: Page, live_server: Any, clinic: Clinic, *, number: str, dob: str) -> None:
    response = page.goto(live_url(live_server, clinic.tenant, "/"))
    assert response is not None and response.status == 200
    page.fill("#id_statement_number", number)
    page.fill("#id_date_of_birth", dob)
    page.get_by_role("button", name="Find my bill").click()


def fill_card(
    page: Page, number: str, *, month: str = "12", year: str = "34", cvc: str = "123", postal: str = "10001"
) -> None:
    card = page.locator("#card-element")
    for placeholder, value in (
        ("number", number),
        ("exp_month", month),
        ("exp_year", year),
        ("cvc", cvc),
        ("postal_code", postal),
    ):
        card.locator(f"input[placeholder={placeholder}]").fill(value)


def submit(page: Page) -> None:
    page.locator("#pay-button").click()


def wait_for_error(page: Page) -> str:
    """The message shown in #payment-error once the attempt has finished."""
    error = page.locator("#payment-error")
    error.wait_for(state="visible")
    # The button is usable again when checkout.js is done with the attempt.
    page.wait_for_function("() => !document.getElementById('pay-button').disabled")
    return error.inner_text().strip()


def answer_3ds(page: Page, *, complete: bool, stop: str, max_prompts: int = 2) -> int:
    """Answer localstripe's 3-D Secure modal until `stop` (a selector) shows.

    The modal appears once for confirmCardSetup and once for
    confirmCardPayment; it is answered each time it appears. Returns how many
    prompts were answered.
    """
    answer = page.get_by_role("button", name="Complete authentication" if complete else "Fail authentication")
    answered = 0
    while True:
        # Whichever comes first: the end state, or (another) 3-D Secure prompt.
        page.locator(f"{stop}, button:has-text('Complete authentication')").first.wait_for(state="visible")
        if page.locator(stop).first.is_visible():
            return answered
        assert answered < max_prompts, f"3-D Secure asked more than {max_prompts} times"
        answer.click()
        answered += 1


def shoot(page: Page, name: str) -> Path:
    path = artifact_path(f"e2e-{name}.png")
    page.screenshot(path=str(path), full_page=True)
    assert path.is_file() and path.stat().st_size > 0
    return path


def payments_of(clinic: Clinic) -> list[Payment]:
    with tenant_scope(clinic.tenant):
        return list(Payment.objects.filter(statement=clinic.statement).order_by("attempt_number"))


def payment_entries_of(clinic: Clinic) -> list[LedgerEntry]:
    with tenant_scope(clinic.tenant):
        return list(LedgerEntry.objects.filter(statement=clinic.statement, kind=EntryKind.PAYMENT))


def balance_minor(clinic: Clinic) -> int:
    with tenant_scope(clinic.tenant):
        return statement_balance(statement=clinic.statement).minor_units


def assert_receipt(page: Page, *, amount: str, remaining: str) -> str:
    page.wait_for_url(RECEIPT_URL)
    receipt_number = page.locator("#receipt-number").inner_text().strip()
    assert re.fullmatch(r"R-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}", receipt_number), receipt_number
    assert page.locator("#remaining-balance").inner_text().strip() == remaining
    assert f"We've recorded {amount}" in page.locator("main, body").first.inner_text()
    return receipt_number


# --------------------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------------------


def test_full_payment_ends_on_a_receipt_with_a_pdf(pay_page, clinic_a, watch):
    page = pay_page()
    assert "$125.00" in page.locator("#pay-amount").inner_text()

    fill_card(page, CARD_OK)
    submit(page)

    receipt_number = assert_receipt(page, amount="$125.00", remaining="$0.00")
    assert "ending in 4242" in page.content()
    shoot(page, "success")

    with page.expect_download(timeout=STEP_TIMEOUT) as download_info:
        page.get_by_role("link", name="Download receipt (PDF)").click()
    download = download_info.value
    assert download.suggested_filename == f"receipt-{receipt_number}.pdf"
    pdf = Path(download.path()).read_bytes()
    assert pdf.startswith(b"%PDF-") and len(pdf) > 500

    [payment] = payments_of(clinic_a)
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.amount_minor == STATEMENT_TOTAL_MINOR
    assert payment.receipt_number == receipt_number
    assert payment.card_last4 == "4242"
    [entry] = payment_entries_of(clinic_a)
    assert entry.payment_id == payment.pk and entry.amount_minor == -STATEMENT_TOTAL_MINOR
    assert balance_minor(clinic_a) == 0
    watch.assert_clean()


def test_declined_card_then_retry_with_another_card(pay_page, clinic_a, watch):
    page = pay_page()

    fill_card(page, CARD_DECLINED_AT_CHARGE)
    submit(page)
    message = wait_for_error(page)
    assert message.startswith("Your card was declined."), message
    assert "You have not been charged" in message
    assert PAY_URL.search(page.url), "the patient stays on the payment page to retry"
    shoot(page, "declined")

    [declined] = payments_of(clinic_a)
    assert declined.status == PaymentStatus.REQUIRES_PAYMENT_METHOD
    assert declined.failure_code == "card_declined"
    assert payment_entries_of(clinic_a) == []
    assert balance_minor(clinic_a) == STATEMENT_TOTAL_MINOR

    # Same page, a new card: checkout.js adopted the fresh SetupIntent.
    fill_card(page, CARD_OK)
    submit(page)
    assert_receipt(page, amount="$125.00", remaining="$0.00")
    shoot(page, "declined-then-retry")

    first, second = payments_of(clinic_a)
    assert first.pk == declined.pk and first.status == PaymentStatus.REQUIRES_PAYMENT_METHOD
    assert second.status == PaymentStatus.SUCCEEDED and second.card_last4 == "4242"
    assert second.setup_intent_id != first.setup_intent_id
    [entry] = payment_entries_of(clinic_a)
    assert entry.payment_id == second.pk
    assert balance_minor(clinic_a) == 0
    watch.assert_clean()


def test_card_declined_when_saved_shows_the_error_and_allows_a_retry(pay_page, clinic_a, watch):
    page = pay_page()

    fill_card(page, CARD_DECLINED_AT_SETUP)
    submit(page)
    message = wait_for_error(page)
    assert "declined" in message.lower(), message
    assert payments_of(clinic_a) == [], "declined by the processor before our server was asked to charge"

    fill_card(page, CARD_OK)
    submit(page)
    assert_receipt(page, amount="$125.00", remaining="$0.00")
    shoot(page, "setup-declined-then-retry")

    [payment] = payments_of(clinic_a)
    assert payment.status == PaymentStatus.SUCCEEDED
    assert len(payment_entries_of(clinic_a)) == 1
    watch.assert_clean()


def test_3d_secure_card_completes_authentication(pay_page, clinic_a, watch):
    page = pay_page()

    fill_card(page, CARD_3DS)
    submit(page)
    prompts = answer_3ds(page, complete=True, stop="#receipt-number")
    assert prompts >= 1, "a 3-D Secure card must ask for authentication"

    assert_receipt(page, amount="$125.00", remaining="$0.00")
    shoot(page, "3ds-success")

    [payment] = payments_of(clinic_a)
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.card_last4 == "3155"
    [entry] = payment_entries_of(clinic_a)
    assert entry.payment_id == payment.pk
    assert balance_minor(clinic_a) == 0
    watch.assert_clean()


def test_3d_secure_failed_at_payment_charges_nothing(pay_page, clinic_a, watch):
    page = pay_page()

    fill_card(page, CARD_3DS)
    submit(page)
    # The card is saved (first prompt passes), then the bank's check for the
    # payment itself fails.
    page.get_by_role("button", name="Complete authentication").click()
    page.get_by_role("button", name="Fail authentication").click()
    message = wait_for_error(page)
    assert "could not confirm it was you" in message, message
    assert "You have not been charged" in message
    assert PAY_URL.search(page.url)
    shoot(page, "3ds-failed")

    [payment] = payments_of(clinic_a)
    assert payment.status == PaymentStatus.REQUIRES_PAYMENT_METHOD
    assert payment.failure_code == "payment_intent_authentication_failure"
    assert payment_entries_of(clinic_a) == []
    assert balance_minor(clinic_a) == STATEMENT_TOTAL_MINOR
    watch.assert_clean()


def test_3d_secure_failed_when_saving_the_card_charges_nothing(pay_page, clinic_a, watch):
    page = pay_page()

    fill_card(page, CARD_3DS)
    submit(page)
    page.get_by_role("button", name="Fail authentication").click()
    message = wait_for_error(page)
    # Our wording, not the processor's: it says whether money moved.
    assert "could not confirm it was you" in message, message
    assert "You have not been charged" in message
    assert PAY_URL.search(page.url)
    shoot(page, "3ds-setup-failed")

    assert payments_of(clinic_a) == []
    assert payment_entries_of(clinic_a) == []
    assert balance_minor(clinic_a) == STATEMENT_TOTAL_MINOR
    watch.assert_clean()


def test_partial_payment_leaves_the_rest_to_pay(pay_page, clinic_a, watch):
    page = pay_page()

    page.get_by_label("Pay another amount").check()
    page.fill("#amount-other", "20.00")
    assert page.locator("#pay-amount").inner_text().strip() == "$20.00"
    fill_card(page, CARD_OK)
    submit(page)

    assert_receipt(page, amount="$20.00", remaining="$105.00")
    assert page.get_by_role("link", name="Make another payment").is_visible()
    shoot(page, "partial")

    [payment] = payments_of(clinic_a)
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.amount_minor == 2_000
    [entry] = payment_entries_of(clinic_a)
    assert entry.amount_minor == -2_000
    assert balance_minor(clinic_a) == STATEMENT_TOTAL_MINOR - 2_000
    watch.assert_clean()


def test_wrong_date_of_birth_gets_the_generic_message(page, live_server, clinic_a, localstripe, watch):
    lookup(page, live_server, clinic_a, number=clinic_a.statement.number, dob="1984-03-01")

    alert = page.locator(".alert-error[role=alert]")
    alert.wait_for(state="visible")
    text = alert.inner_text()
    assert text.startswith("We could not find a statement with those details."), text
    # One message for every mismatch: it does not say which part was wrong.
    assert "date of birth exactly as they appear" in text
    assert "/pay/" not in page.url
    shoot(page, "wrong-dob")

    # A wrong statement number with the right date of birth: the same words.
    lookup(page, live_server, clinic_a, number="ALPHA-9999", dob=DOB)
    alert.wait_for(state="visible")
    assert alert.inner_text() == text

    with tenant_scope(clinic_a.tenant):
        assert not Payment.objects.exists()
    watch.assert_clean()


def shoot_widths(page: Page, name: str) -> list[Path]:
    """Full-page screenshots at desktop (1280 px) and phone (390 px) widths."""
    paths = []
    for width, height in ((1280, 900), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        paths.append(shoot(page, f"{name}-{width}"))
    page.set_viewport_size({"width": 1280, "height": 900})
    return paths


def test_3d_secure_abandoned_then_paid_again_at_once(pay_page, live_server, clinic_a, watch):
    from billing.processor import get_processor

    page = pay_page()
    fill_card(page, CARD_3DS)
    submit(page)
    # The card is saved (first prompt), then the bank asks about the payment...
    page.get_by_role("button", name="Complete authentication").click()
    page.get_by_role("button", name="Complete authentication").wait_for(state="visible")
    [abandoned] = payments_of(clinic_a)
    assert abandoned.status == PaymentStatus.REQUIRES_ACTION
    shoot(page, "3ds-abandoned-prompt")
    # ...and the patient closes the tab.
    context = page.context
    page.close()

    # They come back at once: the statement is payable in full, with a note.
    again = context.new_page()
    again.on("pageerror", lambda error: watch.page_errors.append(str(error)))
    lookup(again, live_server, clinic_a, number=clinic_a.statement.number, dob=DOB)
    again.wait_for_url(PAY_URL)
    again.locator("#card-element input[placeholder=number]").wait_for(state="visible")
    heading = again.locator("h1").inner_text()
    assert heading.startswith("Hello"), heading
    assert "Nothing to pay" not in again.content()
    assert again.locator("#pay-amount").inner_text().strip() == "$125.00"
    note = again.locator("#awaiting-note").inner_text()
    assert "An earlier payment of $125.00 was not finished" in note and "only charged once" in note
    shoot_widths(again, "3ds-abandoned-come-back")

    fill_card(again, CARD_3DS)
    submit(again)
    answer_3ds(again, complete=True, stop="#receipt-number")
    assert_receipt(again, amount="$125.00", remaining="$0.00")
    shoot_widths(again, "3ds-abandoned-paid-again")

    first, second = payments_of(clinic_a)
    assert first.pk == abandoned.pk
    assert first.status == PaymentStatus.CANCELED and first.failure_code == "replaced"
    assert second.status == PaymentStatus.SUCCEEDED
    [entry] = payment_entries_of(clinic_a)
    assert entry.payment_id == second.pk
    assert balance_minor(clinic_a) == 0
    with tenant_scope(clinic_a.tenant):
        # Canceled at the processor too: the old tab can never charge it.
        assert get_processor(clinic_a.tenant).retrieve_payment(first.processor_payment_intent_id).status == "canceled"
    watch.assert_clean()


def test_the_pay_button_shows_the_typed_amount_as_money(pay_page, watch):
    page = pay_page()
    page.get_by_label("Pay another amount").check()
    label = page.locator("#pay-amount")
    for typed, shown in (
        ("5000", "$5,000.00"),
        ("1234.5", "$1,234.50"),
        ("$75", "$75.00"),
        ("0.5", "$0.50"),
        ("12.345", ""),
        ("abc", ""),
    ):
        page.fill("#amount-other", typed)
        assert label.inner_text().strip() == shown, typed
    page.fill("#amount-other", "5000")
    assert page.locator("#pay-button").inner_text().strip() == "Pay $5,000.00"
    watch.assert_clean()


def test_staff_cancel_a_payment_abandoned_at_3d_secure(pay_page, live_server, clinic_a, watch):
    from security.models import Role
    from tests.e2e.test_staff_onboarding import enter_code, sign_in_password
    from tests.factories import PERSONA_PASSWORD, totp_code, totp_device

    page = pay_page()
    fill_card(page, CARD_3DS)
    submit(page)
    page.get_by_role("button", name="Complete authentication").click()
    page.get_by_role("button", name="Complete authentication").wait_for(state="visible")
    [abandoned] = payments_of(clinic_a)
    assert abandoned.status == PaymentStatus.REQUIRES_ACTION
    context = page.context
    page.close()

    # The patient calls the clinic; the front desk cancels the payment.
    desk = clinic_a.user(Role.FRONT_DESK)
    device = totp_device(desk)
    staff = context.new_page()
    staff.on("pageerror", lambda error: watch.page_errors.append(str(error)))
    base = live_url(live_server, clinic_a.tenant, "").rstrip("/")
    sign_in_password(staff, base, desk.email, PERSONA_PASSWORD)
    staff.wait_for_url(re.compile(r"/staff/mfa/"))
    enter_code(staff, totp_code(device))
    staff.wait_for_url(re.compile(r"/staff/$"))
    staff.goto(f"{base}/staff/payments/")
    row = staff.locator("tr", has_text="Awaiting authentication")
    shoot_widths(staff, "3ds-abandoned-staff-list")
    row.get_by_role("button", name=re.compile("Cancel")).click()
    staff.get_by_text("was canceled").wait_for()
    assert "Canceled" in staff.locator("tr", has_text="$125.00").first.inner_text()
    shoot_widths(staff, "3ds-abandoned-staff-canceled")

    [payment] = payments_of(clinic_a)
    assert payment.status == PaymentStatus.CANCELED and payment.failure_code == "canceled_by_clinic"
    assert balance_minor(clinic_a) == STATEMENT_TOTAL_MINOR
    watch.assert_clean()
