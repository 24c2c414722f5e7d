"""Guest statement look-up: one generic message, rate limit and lockout."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from django.utils.html import escape

from audit.models import AuditEvent
from billing.views.patient import LOOKUP_FAILED_MESSAGE, LOOKUP_LOCKED_MESSAGE
from portal.models import Tenant

pytestmark = pytest.mark.django_db


def _lookup(client, number, dob, **extra):
    return client.post("/", {"statement_number": number, "date_of_birth": dob}, **extra)


def test_wrong_number_and_wrong_date_get_the_same_message(make_bill):
    bill = make_bill()
    client = bill.client()
    wrong_number = _lookup(client, "ST-9999", "1984-02-29")
    wrong_date = _lookup(client, bill.statement.number, "1984-03-01")
    for response in (wrong_number, wrong_date):
        assert response.status_code == 200
        assert escape(LOOKUP_FAILED_MESSAGE) in response.content.decode()
    assert wrong_number.content.decode().count("could not find") == wrong_date.content.decode().count("could not find")


def test_match_is_forgiving_about_case_spaces_and_date_format(make_bill):
    bill = make_bill()
    response = _lookup(bill.client(), " st 1001 ", "02/29/1984")
    assert response.status_code == 302 and "/pay/" in response["Location"]


def test_malformed_input_is_a_form_error_not_a_lookup(make_bill):
    bill = make_bill()
    response = _lookup(bill.client(), "", "not-a-date")
    assert response.status_code == 400
    assert "Enter the date of birth" in response.content.decode()
    assert not AuditEvent.objects.filter(action="statement.lookup").exists()


def test_statement_locks_after_ten_failures_for_thirty_minutes(make_bill):
    bill = make_bill()
    start = timezone.now()
    with time_machine.travel(start, tick=False) as traveller:
        # Spread over many IPs so only the statement counter is in play; each
        # IP stays under the per-minute rate limit.
        for attempt in range(10):
            _lookup(bill.client(), bill.statement.number, "1999-01-01", REMOTE_ADDR=f"10.0.0.{attempt}")
        eleventh = _lookup(bill.client(), bill.statement.number, "1984-02-29", REMOTE_ADDR="10.0.1.1")
        assert eleventh.status_code == 429 and escape(LOOKUP_LOCKED_MESSAGE) in eleventh.content.decode()

        traveller.move_to(start + timedelta(minutes=29))
        still = _lookup(bill.client(), bill.statement.number, "1984-02-29", REMOTE_ADDR="10.0.1.2")
        assert still.status_code == 429

        traveller.move_to(start + timedelta(minutes=31))
        opened = _lookup(bill.client(), bill.statement.number, "1984-02-29", REMOTE_ADDR="10.0.1.3")
        assert opened.status_code == 302


def _spread_failures(bill, traveller, start, count, *, seconds=4, **extra):
    """`count` wrong look-ups of different statements from one address, under the per-minute rate limit."""
    for attempt in range(count):
        traveller.move_to(start + timedelta(seconds=seconds * attempt))
        response = _lookup(bill.client(), f"NO-{attempt}", "1999-01-01", **extra)
        assert response.status_code in (200, 429)


def test_ip_locks_across_statements_and_forged_forwarded_for_does_not_help(make_bill, settings):
    settings.SETTLE_TRUSTED_PROXY_COUNT = 1
    bill = make_bill()
    limit = bill.tenant.lookup_ip_failure_limit
    assert limit == 50
    start = timezone.now()
    with time_machine.travel(start, tick=False) as traveller:
        for attempt in range(limit):
            traveller.move_to(start + timedelta(seconds=4 * attempt))
            # The client forges a different left-most address each time; the
            # proxy appends the real one, which is what counts.
            _lookup(
                bill.client(),
                f"ST-{attempt}",
                "1999-01-01",
                HTTP_X_FORWARDED_FOR=f"198.51.100.{attempt}, 203.0.113.7",
            )
        traveller.move_to(start + timedelta(minutes=4))
        blocked = _lookup(
            bill.client(), bill.statement.number, "1984-02-29", HTTP_X_FORWARDED_FOR="192.0.2.1, 203.0.113.7"
        )
        assert blocked.status_code == 429
        other_ip = _lookup(
            bill.client(), bill.statement.number, "1984-02-29", HTTP_X_FORWARDED_FOR="192.0.2.1, 203.0.113.8"
        )
        assert other_ip.status_code == 302


def test_a_shared_address_is_not_locked_out_by_a_few_patients_typos(make_bill):
    """A kiosk: ten wrong dates of birth (the old per-address limit) from one address lock nothing."""
    bill = make_bill()
    start = timezone.now()
    with time_machine.travel(start, tick=False) as traveller:
        _spread_failures(bill, traveller, start, 49, REMOTE_ADDR="10.20.30.40")
        traveller.move_to(start + timedelta(minutes=4))
        assert _lookup(bill.client(), bill.statement.number, "1984-02-29", REMOTE_ADDR="10.20.30.40").status_code == 302
        # The 50th failure (the clinic's limit) locks the address at this clinic.
        assert _lookup(bill.client(), "NO-LAST", "1999-01-01", REMOTE_ADDR="10.20.30.40").status_code == 429
        refused = _lookup(bill.client(), bill.statement.number, "1984-02-29", REMOTE_ADDR="10.20.30.40")
        assert refused.status_code == 429 and escape(LOOKUP_LOCKED_MESSAGE) in refused.content.decode()


def test_an_address_locked_at_one_clinic_can_still_look_up_at_another(make_bill):
    alpha = make_bill("alpha")
    beta = make_bill("beta", number="BT-2002")
    start = timezone.now()
    with time_machine.travel(start, tick=False) as traveller:
        _spread_failures(alpha, traveller, start, alpha.tenant.lookup_ip_failure_limit, REMOTE_ADDR="10.1.2.3")
        traveller.move_to(start + timedelta(minutes=4))
        assert _lookup(alpha.client(), alpha.statement.number, "1984-02-29", REMOTE_ADDR="10.1.2.3").status_code == 429
        at_beta = _lookup(beta.client(), beta.statement.number, "1984-02-29", REMOTE_ADDR="10.1.2.3")
        assert at_beta.status_code == 302 and "/pay/" in at_beta["Location"]
    locked = AuditEvent.objects.filter(action="statement.lookup_locked")
    assert locked.filter(tenant=alpha.tenant).count() == 1 and not locked.filter(tenant=beta.tenant).exists()


def test_a_clinics_own_limits_are_used_and_clamped_to_security_md(make_bill):
    bill = make_bill()
    bill.tenant.lookup_statement_failure_limit = 3
    bill.tenant.lookup_lockout_minutes = 45
    bill.tenant.save()
    start = timezone.now()
    with time_machine.travel(start, tick=False) as traveller:
        for attempt in range(3):
            _lookup(bill.client(), bill.statement.number, "1999-01-01", REMOTE_ADDR=f"10.3.0.{attempt}")
        locked = _lookup(bill.client(), bill.statement.number, "1984-02-29", REMOTE_ADDR="10.3.1.1")
        assert locked.status_code == 429 and "paused for 45 minutes" in locked.content.decode()
        traveller.move_to(start + timedelta(minutes=44))
        assert _lookup(bill.client(), bill.statement.number, "1984-02-29", REMOTE_ADDR="10.3.1.2").status_code == 429
        traveller.move_to(start + timedelta(minutes=46))
        assert _lookup(bill.client(), bill.statement.number, "1984-02-29", REMOTE_ADDR="10.3.1.3").status_code == 302

    # A row written around the settings form (shell, SQL) cannot weaken the lockout.
    Tenant.objects.filter(pk=bill.tenant.pk).update(
        lookup_statement_failure_limit=1000, lookup_ip_failure_limit=30000, lookup_lockout_minutes=1
    )
    start = timezone.now() + timedelta(hours=2)
    with time_machine.travel(start, tick=False) as traveller:
        for attempt in range(10):
            _lookup(bill.client(), bill.statement.number, "1999-01-01", REMOTE_ADDR=f"10.4.0.{attempt}")
        refused = _lookup(bill.client(), bill.statement.number, "1984-02-29", REMOTE_ADDR="10.4.1.1")
        assert refused.status_code == 429 and escape(LOOKUP_LOCKED_MESSAGE) in refused.content.decode()
        traveller.move_to(start + timedelta(minutes=29))
        assert _lookup(bill.client(), bill.statement.number, "1984-02-29", REMOTE_ADDR="10.4.1.2").status_code == 429
        traveller.move_to(start + timedelta(minutes=31))
        assert _lookup(bill.client(), bill.statement.number, "1984-02-29", REMOTE_ADDR="10.4.1.3").status_code == 302


def test_rate_limit_slows_bursts_from_one_ip(make_bill):
    bill = make_bill()
    statuses = [_lookup(bill.client(), f"NOPE{i}", "1999-01-01", REMOTE_ADDR="10.9.9.9").status_code for i in range(9)]
    # 9 failures: not yet locked, not rate limited (limit 20/minute).
    assert statuses == [200] * 9
    for _ in range(11):
        _lookup(bill.client(), bill.statement.number, "1984-02-29", REMOTE_ADDR="10.9.9.8")
    assert _lookup(bill.client(), bill.statement.number, "1984-02-29", REMOTE_ADDR="10.9.9.8").status_code == 302
    for _ in range(20):
        _lookup(bill.client(), "x", "1999-01-01", REMOTE_ADDR="10.9.9.7")
    limited = _lookup(bill.client(), bill.statement.number, "1984-02-29", REMOTE_ADDR="10.9.9.7")
    assert limited.status_code == 429


def test_lookups_are_audited_without_what_was_typed(make_bill):
    bill = make_bill()
    _lookup(bill.client(), bill.statement.number, "1999-01-01")
    _lookup(bill.client(), bill.statement.number, "1984-02-29")
    events = list(AuditEvent.objects.filter(action="statement.lookup").order_by("id"))
    assert [e.outcome for e in events] == ["failure", "success"]
    assert events[1].target_id == str(bill.statement.public_id)
    for event in events:
        flat = str(event.details) + event.target_id
        assert bill.statement.number not in flat and "1984" not in flat and "1999" not in flat
