"""What patients see of their own clinic: the look-up form's example statement
number, and the receipt's time zone, address and processor reference."""

from __future__ import annotations

import datetime
import re
import zlib

import pytest
import time_machine

from billing.demo import DEMO_CLINIC, NORTHSIDE_CLINIC, demo_seed
from billing.models import Payment
from portal.models import Tenant
from portal.tenancy.context import platform_scope, tenant_scope
from tests.billing.conftest import open_checkout

pytestmark = pytest.mark.django_db


def _pdf_text(pdf: bytes) -> str:
    """The text drawn in a PDF (fpdf2 compresses each page's content stream)."""
    chunks = []
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            chunks.append(zlib.decompress(stream).decode("latin-1"))
        except zlib.error:
            chunks.append(stream.decode("latin-1"))
    return "".join(re.findall(r"\((.*?)\)\s*Tj", "".join(chunks)))


def _set(tenant: Tenant, **fields: str) -> None:
    for name, value in fields.items():
        setattr(tenant, name, value)
    tenant.save(update_fields=list(fields))


# --- The look-up form's example -------------------------------------------------------


def test_the_lookup_form_shows_the_clinics_own_example(make_bill):
    bill = make_bill()
    _set(bill.tenant, statement_number_hint="ALP-00017")

    page = bill.client().get("/").content.decode()

    assert "e.g. ALP-00017." in page
    assert "DC-100234" not in page


def test_a_clinic_without_an_example_shows_none(make_bill):
    bill = make_bill()

    page = bill.client().get("/").content.decode()

    assert "Printed at the top right of your statement." in page
    assert "e.g." not in page and "DC-100234" not in page


def test_the_demo_seed_gives_each_clinic_its_own_profile(settings):
    demo_seed()
    with platform_scope():
        demo = Tenant.objects.get(slug=DEMO_CLINIC.slug)
        northside = Tenant.objects.get(slug=NORTHSIDE_CLINIC.slug)
    assert demo.statement_number_hint == "DC-100000"
    assert (demo.address_line1, demo.city, demo.state, demo.postal_code) == (
        "1200 Example Avenue NW",
        "Washington",
        "DC",
        "20005",
    )
    assert northside.statement_number_hint.startswith("NFP-")
    assert northside.address_line1 == ""
    # A hint is stored in clear, so it is never one of the clinic's real statement numbers.
    for spec, tenant in ((DEMO_CLINIC, demo), (NORTHSIDE_CLINIC, northside)):
        numbers = {statement.number for patient in spec.patients for statement in patient.statements}
        assert tenant.statement_number_hint not in numbers

    # A value someone changed is kept by a second run; a blanked one is filled again.
    _set(demo, statement_number_hint="DC-999999", address_line2="")
    demo_seed()
    demo.refresh_from_db()
    assert demo.statement_number_hint == "DC-999999"
    assert demo.address_line2 == "Suite 300"


# --- The receipt ----------------------------------------------------------------------


def _paid(bill, fake_processor):
    checkout = open_checkout(bill)
    fake_processor.complete_setup(checkout.config["setupIntentId"])
    status, body = checkout.submit("125.00")
    assert body["state"] == "succeeded"
    with tenant_scope(bill.tenant):
        return checkout, body, Payment.objects.get()


def test_the_web_receipt_shows_the_time_in_the_clinics_zone(make_bill, fake_processor):
    bill = make_bill()  # America/New_York
    # 14:14 UTC on Dec 2 is 9:14 AM Eastern Standard Time.
    with time_machine.travel(datetime.datetime(2026, 12, 2, 14, 14, tzinfo=datetime.UTC), tick=False):
        checkout, body, _ = _paid(bill, fake_processor)
        page = checkout.client.get(body["resultUrl"]).content.decode()

    assert '<dd id="paid-at">Dec 2, 2026, 9:14 AM EST</dd>' in page


def test_the_web_receipt_uses_another_clinics_zone(make_bill, fake_processor):
    bill = make_bill()
    _set(bill.tenant, timezone="America/Los_Angeles")
    with time_machine.travel(datetime.datetime(2026, 7, 2, 16, 5, tzinfo=datetime.UTC), tick=False):
        checkout, body, _ = _paid(bill, fake_processor)
        page = checkout.client.get(body["resultUrl"]).content.decode()

    assert '<dd id="paid-at">Jul 2, 2026, 9:05 AM PDT</dd>' in page


def test_the_pdf_receipt_has_the_clinics_address_and_the_processor_reference(make_bill, fake_processor):
    bill = make_bill()
    _set(
        bill.tenant,
        address_line1="12 Harbor Road",
        address_line2="Floor 2",
        city="Boston",
        state="MA",
        postal_code="02110",
    )
    checkout, body, payment = _paid(bill, fake_processor)

    text = _pdf_text(checkout.client.get(body["resultUrl"] + "receipt.pdf").content)

    assert "12 Harbor Road" in text and "Floor 2" in text and "Boston, MA 02110" in text
    assert "Processor reference" in text and payment.processor_payment_intent_id in text


def test_the_pdf_receipt_prints_only_the_address_parts_that_are_set(make_bill, fake_processor):
    bill = make_bill()
    _set(bill.tenant, city="Springfield", state="IL")
    checkout, body, _ = _paid(bill, fake_processor)

    text = _pdf_text(checkout.client.get(body["resultUrl"] + "receipt.pdf").content)

    assert "Springfield, IL" in text
    assert "None" not in text and ", ," not in text


def test_the_pay_page_tells_the_card_form_how_to_show_money(make_bill, fake_processor):
    bill = make_bill()
    checkout = open_checkout(bill)
    assert checkout.config["currencyPrefix"] == "$"
    assert checkout.config["currencyExponent"] == 2
