"""Recording: one chain per tenant plus the platform's, no PHI in details."""

from __future__ import annotations

import pytest

from audit.chain import GENESIS, event_hash
from audit.models import AuditChain, AuditEvent, AuditEventSubject
from audit.recorder import AuditDetailError, audit_record, event_record
from tests.audit.conftest import fill

pytestmark = pytest.mark.django_db


def test_events_form_one_gapless_chain_per_tenant(tenant_a, tenant_b):
    fill(tenant_a, 3)
    fill(tenant_b, 2)
    fill(None, 2)
    fill(tenant_a, 1)
    for tenant, count in ((tenant_a, 4), (tenant_b, 2), (None, 2)):
        events = list(AuditEvent.objects.filter(tenant=tenant).order_by("sequence"))
        assert [e.sequence for e in events] == list(range(1, count + 1))
        assert events[0].prev_hash == GENESIS
        for before, after in zip(events, events[1:], strict=False):
            assert after.prev_hash == before.hash
        chain = AuditChain.objects.get(tenant=tenant) if tenant else AuditChain.objects.get(key="platform")
        assert (chain.last_sequence, chain.last_hash) == (count, events[-1].hash)
        for event in events:
            assert event_hash(event_record(event, chain.key)) == event.hash


def test_digests_carry_no_long_digit_runs_for_card_scanners_to_flag(tenant_a):
    from security.cardscan import find_card_numbers

    events = fill(tenant_a, 300)
    text = " ".join(e.hash + " " + e.prev_hash for e in events)
    assert all(len(e.hash) == 43 for e in events)
    assert list(find_card_numbers(text)) == []


def test_stored_event_hashes_the_same_after_reloading(tenant_a):
    event = audit_record(
        action="ledger.viewed",
        tenant=tenant_a,
        actor_role="front_desk",
        target_type="payment_list",
        details={"patients": ["a", "b"], "count": 2, "flag": True, "none": None},
    )
    reloaded = AuditEvent.objects.get(pk=event.pk)
    assert event_hash(event_record(reloaded, str(tenant_a.public_id))) == event.hash


def test_a_rolled_back_act_leaves_no_gap(tenant_a):
    from django.db import transaction

    fill(tenant_a, 1)
    with pytest.raises(RuntimeError), transaction.atomic():
        fill(tenant_a, 1)
        raise RuntimeError("the act failed")
    fill(tenant_a, 1)
    assert list(AuditEvent.objects.filter(tenant=tenant_a).values_list("sequence", flat=True).order_by("sequence")) == [
        1,
        2,
    ]


@pytest.mark.parametrize(
    "details",
    [
        {"note": "Robin Testpatient was very upset about the bill, call back"},
        {"dob": 1984.5},
        {"nested": {"name": "x"}},
        {"patients": ["ok", {"name": "x"}]},
        {"bad": "nul\x00char"},
        {"email": "robin@example.com"},
        {f"k{i}": i for i in range(40)},
    ],
)
def test_details_that_could_carry_free_text_are_refused(tenant_a, details):
    with pytest.raises(AuditDetailError):
        audit_record(action="receipt.viewed", tenant=tenant_a, details=details)
    assert not AuditEvent.objects.exists()


def test_unknown_actions_and_outcomes_are_refused(tenant_a):
    with pytest.raises(ValueError, match="unregistered"):
        audit_record(action="patient.teleported", tenant=tenant_a)
    with pytest.raises(ValueError, match="outcome"):
        audit_record(action="receipt.viewed", tenant=tenant_a, outcome="maybe")


def test_listed_references_are_indexed_as_subjects(tenant_a):
    event = audit_record(
        action="ledger.viewed",
        tenant=tenant_a,
        target_type="patient",
        target_id="p-1",
        details={"patients": ["p-1", "p-2"], "statements": ["s-9"]},
    )
    subjects = set(AuditEventSubject.objects.filter(event=event).values_list("subject_type", "subject_id"))
    assert subjects == {("patient", "p-1"), ("patient", "p-2"), ("statement", "s-9")}


TEMPLATE_RECORDS = [
    {"details": {}, "source_ip": None, "actor_user_id": None, "target_id": ""},
    {"details": {"patients": ["p-1", "p-2"], "n": 3, "flag": False, "none": None, "clé": "x"}, "source_ip": "::1"},
    {"target_id": 'quote " backslash \\ tab \t nul \x00 é', "request_id": "req-1", "actor_role": "front_desk"},
]


@pytest.mark.parametrize("overrides", TEMPLATE_RECORDS)
def test_the_canonical_template_with_its_holes_filled_is_the_canonical_json(overrides):
    """settle_audit_append hashes the template's pieces around the time, previous hash and sequence."""
    from datetime import UTC, datetime

    from audit.chain import canonical_bytes, canonical_template, format_time

    record = {
        "chain": "3f1c0e7e-0000-4000-8000-000000000001",
        "sequence": 1234567,
        "public_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "occurred_at": format_time(datetime(2026, 11, 23, 19, 0, 1, 7, tzinfo=UTC)),
        "actor_user_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
        "actor_role": "",
        "action": "ledger.viewed",
        "target_type": "patient",
        "target_id": "p-1",
        "outcome": "success",
        "source_ip": "10.0.0.1",
        "request_id": "",
        "details": {"n": 1},
        "prev_hash": GENESIS,
        **overrides,
    }
    first, second, third, fourth = canonical_template(record)
    spliced = first + record["occurred_at"] + second + record["prev_hash"] + third + str(record["sequence"]) + fourth
    assert spliced.encode("ascii") == canonical_bytes(record)
