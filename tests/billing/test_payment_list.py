"""The staff payment list: each filter, pagination, the CSV and its audit, bad filter input.

Payments are written directly (as the checkout service records attempts);
the list only reads them. Dates are days in the clinic's time zone
(America/New_York for the test clinics).
"""

from __future__ import annotations

import csv
import datetime
import io
import re
import secrets
from typing import Any

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from billing.models import Payment, PaymentChannel, PaymentStatus, Statement
from billing.services.checkout import checkout_open
from billing.services.payment_search import csv_cell
from portal.tenancy.context import tenant_scope
from security.models import Role
from tests.conftest import Clinic
from tests.factories import PatientFactory, StatementFactory

pytestmark = pytest.mark.django_db

BILLING = Role.BILLING_MANAGER.value
URL = "/staff/payments/"


def pay(clinic: Clinic, *, statement: Statement | None = None, at: datetime.datetime | None = None, **fields: Any):
    """One payment of `statement` (the clinic's own by default); `at` sets when it was made."""
    statement = statement or clinic.statement
    values: dict[str, Any] = {
        "amount_minor": 5_000,
        "status": PaymentStatus.SUCCEEDED,
        "card_brand": "visa",
        "card_last4": "4242",
        "receipt_number": f"R-{secrets.token_hex(4).upper()}",
        **fields,
    }
    with tenant_scope(clinic.tenant):
        checkout = checkout_open(tenant=clinic.tenant, statement=statement)
        payment = Payment.objects.create(
            tenant=clinic.tenant,
            checkout=checkout,
            statement=statement,
            patient=statement.patient,
            attempt_number=1,
            setup_intent_id=f"seti_{secrets.token_hex(4)}",
            currency="USD",
            **values,
        )
        if at is not None:
            Payment.objects.filter(pk=payment.pk).update(created_at=at)
    return payment


def listed(clinic: Clinic, **query: str) -> tuple[int, str, set[str]]:
    """The list page for `query`: status, HTML and the public ids of the payments shown."""
    response = clinic.client_as(BILLING).get(reverse("staff:payments"), query)
    page = response.content.decode()
    with tenant_scope(clinic.tenant):
        shown = {str(p) for p in Payment.objects.values_list("public_id", flat=True) if str(p) in page}
    return response.status_code, page, shown


def ids(*payments: Payment) -> set[str]:
    return {str(p.public_id) for p in payments}


def test_date_range_is_the_clinics_calendar_days(clinic_a: Clinic) -> None:
    # 03:30 UTC on 10 March is still 9 March in New York (23:30 EST).
    late_evening = pay(clinic_a, at=datetime.datetime(2026, 3, 10, 3, 30, tzinfo=datetime.UTC))
    next_morning = pay(clinic_a, at=datetime.datetime(2026, 3, 10, 14, 0, tzinfo=datetime.UTC))
    earlier = pay(clinic_a, at=datetime.datetime(2026, 3, 1, 14, 0, tzinfo=datetime.UTC))
    assert listed(clinic_a, date_from="2026-03-09", date_to="2026-03-09")[2] == ids(late_evening)
    assert listed(clinic_a, date_from="2026-03-10")[2] == ids(next_morning)
    assert listed(clinic_a, date_to="2026-03-09")[2] == ids(late_evening, earlier)


def test_status_amount_last4_and_channel_filters(clinic_a: Clinic) -> None:
    small = pay(clinic_a, amount_minor=1_000)
    large = pay(clinic_a, amount_minor=20_000, card_last4="1881")
    failed = pay(clinic_a, amount_minor=3_000, status=PaymentStatus.REQUIRES_PAYMENT_METHOD, receipt_number="")
    by_phone = pay(clinic_a, amount_minor=4_000, channel=PaymentChannel.PHONE)
    assert listed(clinic_a, status="requires_payment_method")[2] == ids(failed)
    assert listed(clinic_a, amount_min="30", amount_max="40.00")[2] == ids(failed, by_phone)
    assert listed(clinic_a, amount_min="100")[2] == ids(large)
    assert listed(clinic_a, amount_max="10")[2] == ids(small)
    assert listed(clinic_a, last4="1881")[2] == ids(large)
    assert listed(clinic_a, channel="phone")[2] == ids(by_phone)
    assert listed(clinic_a, channel="online", last4="4242", status="succeeded")[2] == ids(small)


def test_statement_number_matches_exactly_through_the_blind_index(clinic_a: Clinic) -> None:
    other = StatementFactory.create(tenant=clinic_a.tenant, patient=clinic_a.patient, number="ALPHA-2002")
    near = StatementFactory.create(tenant=clinic_a.tenant, patient=clinic_a.patient, number="ALPHA-20021")
    on_other = pay(clinic_a, statement=other)
    pay(clinic_a, statement=near)
    pay(clinic_a)
    # Typed as on paper or loosely (case, spaces, dashes): the same number; a prefix is not a match.
    assert listed(clinic_a, statement="ALPHA-2002")[2] == ids(on_other)
    assert listed(clinic_a, statement="alpha 2002")[2] == ids(on_other)
    assert listed(clinic_a, statement="ALPHA-200")[2] == set()


def test_the_list_is_paginated_by_50_and_pages_keep_the_filters(clinic_a: Clinic) -> None:
    for _ in range(51):
        pay(clinic_a, card_last4="5555")
    pay(clinic_a, card_last4="1111")
    status, page, shown = listed(clinic_a, last4="5555")
    assert status == 200 and len(shown) == 50 and "Page 1 of 2" in page
    assert "last4=5555&amp;page=2" in page
    status, page, second = listed(clinic_a, last4="5555", page="2")
    assert len(second) == 1 and not (second & shown)
    event = AuditEvent.objects.filter(action="ledger.viewed", target_type="payment_list").latest("sequence")
    assert event.details["page"] == 2 and event.details["patients"] == [str(clinic_a.patient.public_id)]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"amount_min": "ten"}, "Enter an amount such as 25.00."),
        ({"amount_max": "1.234"}, "at most 2 decimal places"),
        ({"last4": "12a4"}, "Enter the last 4 digits of the card."),
        ({"date_from": "2026-13-45"}, "Enter a valid date."),
        ({"date_from": "2026-03-10", "date_to": "2026-03-01"}, "The end date is before the start date."),
        ({"amount_min": "50", "amount_max": "10"}, "The upper amount is below the lower one."),
        ({"status": "bogus"}, "Select a valid choice."),
        ({"channel": "fax"}, "Select a valid choice."),
    ],
)
def test_bad_filters_get_a_message_and_list_nothing(clinic_a: Clinic, query: dict[str, str], message: str) -> None:
    pay(clinic_a)
    before = AuditEvent.objects.filter(action="ledger.viewed").count()
    status, page, shown = listed(clinic_a, **query)
    assert status == 200 and message in page and 'id="filter-errors"' in page
    assert shown == set() and 'id="payments"' not in page
    assert AuditEvent.objects.filter(action="ledger.viewed").count() == before
    export = clinic_a.client_as(BILLING).get(reverse("staff:payments-export"), query)
    assert export.status_code == 302 and not AuditEvent.objects.filter(action="payment.list_exported").exists()


def test_the_filter_form_has_no_field_that_would_put_phi_in_the_url(clinic_a: Clinic) -> None:
    page = listed(clinic_a)[1]
    form = page[page.index('id="payment-filters"') :]
    form = form[: form.index("</form>")]
    names = set(re.findall(r'<(?:input|select)[^>]* name="([^"]+)"', form))
    assert names == {"date_from", "date_to", "status", "amount_min", "amount_max", "statement", "last4", "channel"}
    assert 'method="get"' in page


def _csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode())))


def test_csv_of_the_filtered_list_is_formula_safe_and_audited_naming_the_patients(clinic_a: Clinic) -> None:
    sly = PatientFactory.create(tenant=clinic_a.tenant, first_name='=HYPERLINK("x")', last_name="+Smith")
    sly_statement = StatementFactory.create(tenant=clinic_a.tenant, patient=sly, number="ALPHA-3003")
    wanted = pay(clinic_a, statement=sly_statement, amount_minor=2_550, card_last4="0005")
    pay(clinic_a, card_last4="9999")
    response = clinic_a.client_as(BILLING).get(reverse("staff:payments-export"), {"last4": "0005"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="payments-')
    header, *rows = _csv(response)
    assert header[:5] == ["Date", "Receipt", "Patient", "Statement", "Amount"]
    assert len(rows) == 1
    row = dict(zip(header, rows[0], strict=True))
    assert row["Patient"] == '\'=HYPERLINK("x") +Smith'
    assert row["Statement"] == "ALPHA-3003" and row["Amount"] == "25.50" and row["Card last 4"] == "0005"
    assert row["Channel"] == "Online" and row["Payment id"] == str(wanted.public_id)
    event = AuditEvent.objects.get(action="payment.list_exported")
    assert event.details["patients"] == [str(sly.public_id)] and event.details["rows"] == 1
    assert "HYPERLINK" not in str(event.details) and "0005" not in str(event.details)


@pytest.mark.parametrize(
    ("value", "safe"),
    [("=1+1", "'=1+1"), ("+1", "'+1"), ("-2", "'-2"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("Ann", "Ann")],
)
def test_csv_cells_starting_a_formula_are_prefixed(value: str, safe: str) -> None:
    assert csv_cell(value) == safe


def test_the_list_shows_only_this_clinics_payments(clinic_a: Clinic, clinic_b: Clinic) -> None:
    mine = pay(clinic_a)
    theirs = pay(clinic_b)
    page = listed(clinic_a)[1]
    assert str(mine.public_id) in page and str(theirs.public_id) not in page
    response = clinic_a.client_as(BILLING).get(reverse("staff:payments-export"))
    assert str(theirs.public_id) not in response.content.decode()


def test_the_list_takes_the_same_queries_for_5_or_30_payments(clinic_a: Clinic) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = clinic_a.client_as(BILLING)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(reverse("staff:payments"), {"status": "succeeded"}).status_code == 200
        # Data keys are fetched as the cipher's cache decides (tests/security); count the page's own queries.
        return sum('"security_datakey"' not in q["sql"] for q in captured.captured_queries)

    for _ in range(5):
        pay(clinic_a)
    few = queries()
    for _ in range(25):
        pay(clinic_a)
    assert queries() == few
    assert "30 payments" in client.get(reverse("staff:payments"), {"status": "succeeded"}).content.decode()
