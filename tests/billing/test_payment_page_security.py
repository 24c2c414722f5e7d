"""Payment pages: strict CSP, only inventoried scripts, card-testing brakes,
and no card number anywhere on our side."""

from __future__ import annotations

import io
import logging
import re

import pytest
from django.core.management import CommandError, call_command
from django.templatetags.static import static

from billing.models import EntryKind, LedgerEntry
from portal.tenancy.context import tenant_scope
from tests.billing.conftest import open_checkout
from tests.billing.test_stripe_localstripe import browser_confirm_setup

pytestmark = pytest.mark.django_db

_SCRIPT_SRC = re.compile(r"<script\b[^>]*\bsrc=\"([^\"]+)\"", re.I)
_INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)([^>]*)>", re.I)


def test_payment_page_csp_is_strict(make_bill, fake_processor, settings):
    bill = make_bill()
    checkout = open_checkout(bill)
    response = checkout.client.get(checkout.pay_url)
    policy = response["Content-Security-Policy"]
    directives = {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}
    script_src = directives["script-src"]
    assert "'self'" in script_src and any(src.startswith("'nonce-") for src in script_src)
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
    assert directives["frame-ancestors"] == ["'none'"] and directives["object-src"] == ["'none'"]
    stripe_origin = re.match(r"^https?://[^/]+", settings.STRIPE_JS_URL).group()  # type: ignore[union-attr]
    assert set(script_src) - {"'self'"} - {s for s in script_src if s.startswith("'nonce-")} == {stripe_origin}


def test_payment_page_runs_only_inventoried_scripts(make_bill, fake_processor, settings):
    bill = make_bill()
    checkout = open_checkout(bill)
    html = checkout.client.get(checkout.pay_url).content.decode()
    # The inventory in docs/payment-page-scripts.md: Stripe.js and checkout.js.
    assert set(_SCRIPT_SRC.findall(html)) == {settings.STRIPE_JS_URL, static("billing/checkout.js")}
    inline = list(_INLINE_SCRIPT.findall(html))
    assert inline == [' id="checkout-config" type="application/json"']  # data, never executed


def test_card_testing_brakes_per_session(make_bill, fake_processor):
    bill = make_bill(amount_minor=1_000_000)
    checkout = open_checkout(bill)
    fake_processor.create_outcome = "decline"
    states = []
    for _ in range(11):
        setup_id = checkout.config["setupIntentId"]
        fake_processor.complete_setup(setup_id)
        status, body = checkout.submit("1.00", setup_intent_id=setup_id)
        states.append(body["state"])
        if body.get("setupIntentId"):
            checkout.config["setupIntentId"] = body["setupIntentId"]
    assert states[:10] == ["failed"] * 10
    assert states[10] == "invalid"  # refused before reaching the processor
    assert len(fake_processor.calls_named("create_payment")) == 10


def test_no_card_number_reaches_database_or_logs(make_bill, localstripe, caplog):
    caplog.set_level(logging.DEBUG)
    bill = make_bill()
    checkout = open_checkout(bill)
    browser_confirm_setup(localstripe.base_url, checkout.config["clientSecret"], "4000000000000341")
    _, declined = checkout.submit("125.00")
    assert declined["state"] == "failed"
    browser_confirm_setup(localstripe.base_url, declined["setupClientSecret"], "4242424242424242")
    _, paid = checkout.submit("125.00", setup_intent_id=declined["setupIntentId"])
    assert paid["state"] == "succeeded"
    log_file = io.StringIO("\n".join(record.getMessage() for record in caplog.records))

    out = io.StringIO()
    call_command("scan_card_numbers", stdout=out)
    assert "No card numbers found" in out.getvalue()
    assert "4242424242424242" not in log_file.getvalue()
    with tenant_scope(bill.tenant):
        assert LedgerEntry.objects.filter(kind=EntryKind.PAYMENT).count() == 1


def test_card_scan_finds_a_planted_number(make_bill, tmp_path):
    bill = make_bill()
    with tenant_scope(bill.tenant):
        LedgerEntry.objects.create(
            tenant=bill.tenant,
            patient=bill.statement.patient,
            statement=bill.statement,
            kind=EntryKind.ADJUSTMENT,
            amount_minor=-1,
            currency="USD",
            memo="oops 4000 0566 5566 5556",
        )
    log = tmp_path / "app.log"
    log.write_text("card=5555555555554444\n")
    with pytest.raises(CommandError, match="2 card number"):
        call_command("scan_card_numbers", str(log), stdout=io.StringIO(), stderr=io.StringIO())
