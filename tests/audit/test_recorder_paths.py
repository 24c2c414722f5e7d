"""The recorder's two write paths store the same event, and what it returns is that event.

On PostgreSQL audit_record appends in one statement (settle_audit_append,
which hashes in the database); elsewhere it writes through the ORM. The chain is only
as good as the hashes both paths compute, so the first test writes the same
event both ways from the same chain state, with the same clock and public id,
and compares everything stored.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit import recorder
from audit.chain import GENESIS, event_hash
from audit.models import AuditChain, AuditEvent, AuditEventSubject
from audit.recorder import AuditDetailError, audit_record, chain_key_for, event_record
from audit.services.integrity import chain_for, chain_verify
from portal.logging import request_id_var
from portal.tenancy.context import active_scope, tenant_scope
from tests.audit.conftest import fill

pytestmark = pytest.mark.django_db

# Later than the events `fill` writes now: an event's time never precedes its predecessor's.
FROZEN_TIME = datetime(2036, 11, 23, 16, 59, 58, 123456, tzinfo=UTC)
FROZEN_ID = uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e")
ACTOR = SimpleNamespace(public_id=uuid.UUID("7c9e6679-7425-40de-944b-e07fc1f90ae7"))

# Awkward inputs: platform chain, first event of a chain, IPv6 (upper case,
# IPv4-mapped), empty role, a request id, lists of references with a
# duplicate of the target, a non-ASCII detail key, no subjects at all.
CASES: dict[str, dict[str, Any]] = {
    "tenant chain, references and IPv6": {
        "tenant": "a",
        "existing": 2,
        "kwargs": {
            "action": "ledger.viewed",
            "actor": ACTOR,
            "actor_role": "front_desk",
            "target_type": "patient",
            "target_id": "p-1",
            "details": {"patients": ["p-1", "p-2", "p-3"], "statements": ["s-9"], "count": 3, "flag": True},
            "source_ip": "2001:DB8:0:0::1",
        },
    },
    "first event of a tenant chain": {
        "tenant": "a",
        "existing": 0,
        "kwargs": {"action": "receipt.viewed", "target_type": "receipt", "target_id": "R-1", "details": {"n": 1}},
    },
    "platform chain, empty role, mapped IPv4": {
        "tenant": None,
        "existing": 1,
        "kwargs": {"action": "auth.login_failed", "outcome": "failure", "source_ip": "::ffff:10.1.2.3"},
    },
    "first event of the platform chain": {"tenant": None, "existing": 0, "kwargs": {"action": "auth.login_failed"}},
    "non-ASCII key, null and empty values, no subjects": {
        "tenant": "a",
        "existing": 1,
        "kwargs": {"action": "receipt.viewed", "details": {"clé": "x", "none": None, "empty": "", "refs": []}},
    },
    "address from the request": {
        "tenant": "a",
        "existing": 1,
        "kwargs": {"action": "receipt.viewed", "actor_role": "guest", "request": "fe80::1:2"},
    },
}


def _tenant(case: dict[str, Any], tenant_a: Any) -> Any:
    return tenant_a if case["tenant"] == "a" else None


def _kwargs(case: dict[str, Any], tenant: Any) -> dict[str, Any]:
    kwargs = dict(case["kwargs"], tenant=tenant)
    if "request" in kwargs:
        kwargs["request"] = RequestFactory().get("/", REMOTE_ADDR=kwargs["request"])
    return kwargs


def _stored(event: AuditEvent) -> dict[str, Any]:
    """Everything the database holds for `event` but the serial ids."""
    row: dict[str, Any] = dict(AuditEvent.objects.filter(pk=event.pk).values().get())
    chain: dict[str, Any] = dict(AuditChain.objects.filter(pk=row.pop("chain_id")).values().get())
    del row["id"], chain["id"]
    subjects = list(
        AuditEventSubject.objects.filter(event_id=event.pk)
        .order_by("id")
        .values_list("tenant_id", "subject_type", "subject_id")
    )
    return {"event": row, "head": chain, "subjects": subjects}


def _write_and_roll_back(monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, Any], *, fast: bool) -> dict[str, Any]:
    """Record once with the clock and the public id frozen; return what was stored, then undo it."""
    if not fast:
        monkeypatch.setattr(recorder, "FAST_PATH_VENDORS", frozenset())
    monkeypatch.setattr(timezone, "now", lambda: FROZEN_TIME)
    monkeypatch.setattr(uuid, "uuid4", lambda: FROZEN_ID)
    token = request_id_var.set("req-7f3a")
    try:
        with transaction.atomic(), CaptureQueriesContext(connection) as queries:
            event = audit_record(**kwargs)
            written = [query["sql"] for query in queries.captured_queries]
            stored = _stored(event)
            returned = {name: getattr(event, name) for name in ("public_id", "sequence", "prev_hash", "hash")}
            transaction.set_rollback(True)
    finally:
        request_id_var.reset(token)
        monkeypatch.undo()
    return {"stored": stored, "returned": returned, "sql": written}


@pytest.mark.postgres
@pytest.mark.parametrize("name", list(CASES))
def test_postgresql_and_portable_paths_store_the_same_event(name, tenant_a, monkeypatch):
    case = CASES[name]
    tenant = _tenant(case, tenant_a)
    fill(tenant, case["existing"])
    kwargs = _kwargs(case, tenant)
    fast = _write_and_roll_back(monkeypatch, kwargs, fast=True)
    portable = _write_and_roll_back(monkeypatch, kwargs, fast=False)

    # The fast path really ran: the statements were written out, not the ORM's.
    assert any("settle_audit_append(" in sql for sql in fast["sql"])
    assert not any("settle_audit_append(" in sql for sql in portable["sql"])
    assert fast["stored"] == portable["stored"]
    assert fast["returned"] == portable["returned"]
    stored = fast["stored"]["event"]
    assert stored["sequence"] == case["existing"] + 1 and stored["public_id"] == FROZEN_ID
    assert stored["occurred_at"] == FROZEN_TIME and stored["request_id"] == "req-7f3a"
    assert (fast["stored"]["head"]["last_sequence"], fast["stored"]["head"]["last_hash"]) == (
        stored["sequence"],
        stored["hash"],
    )
    # The stored row hashes to the hash it carries.
    loaded = AuditEvent(**stored)
    assert event_hash(event_record(loaded, chain_key_for(tenant))) == stored["hash"]


@pytest.mark.postgres
def test_an_append_to_an_existing_chain_is_one_statement(tenant_a):
    fill(tenant_a, 1)
    with tenant_scope(tenant_a), transaction.atomic(), CaptureQueriesContext(connection) as queries:
        event = audit_record(action="receipt.viewed", tenant=tenant_a, target_type="receipt", target_id="R-2")
        # The returned event's chain and tenant come with it, as on the ORM path.
        assert (event.chain.key, event.chain.last_sequence, event.tenant) == (str(tenant_a.public_id), 2, tenant_a)
    statements = [query["sql"] for query in queries.captured_queries]
    assert len(statements) == 1, statements
    assert "FROM settle_audit_append(" in statements[0]


@pytest.mark.postgres
def test_outside_any_scope_the_event_is_appended_in_its_chains_own_scope(tenant_a):
    """Platform-host requests, sign-in signals and tasks have no scope; row-level security needs one."""
    fill(tenant_a, 1)
    with CaptureQueriesContext(connection) as queries:
        audit_record(action="receipt.viewed", tenant=tenant_a, target_type="receipt", target_id="R-3")
        audit_record(action="demo.seeded", tenant=None)
    settings = [query["sql"] for query in queries.captured_queries if "set_config" in query["sql"]]
    assert settings == [
        f"SELECT set_config('settle.tenant_id', '{tenant_a.pk}', false)",
        "SELECT set_config('settle.tenant_id', '', false)",
        "SELECT set_config('settle.tenant_id', '*', false)",
        "SELECT set_config('settle.tenant_id', '', false)",
    ]
    assert active_scope() is None


@pytest.mark.parametrize("tenant_name", ["a", None])
def test_the_returned_event_is_the_stored_row(tenant_name, tenant_a):
    tenant = tenant_a if tenant_name else None
    first = audit_record(action="receipt.viewed", tenant=tenant, target_type="receipt", target_id="R-1")
    event = audit_record(
        action="ledger.viewed",
        tenant=tenant,
        actor=ACTOR,
        actor_role="front_desk",
        details={"patients": ["p-1", "p-2"], "n": 2},
        source_ip="2001:db8::7",
    )
    reloaded = AuditEvent.objects.get(pk=event.pk)
    for name in ("public_id", "chain_id", "sequence", "tenant_id", "occurred_at", "actor_user_id", "details", "hash"):
        assert getattr(event, name) == getattr(reloaded, name), name
    assert (event.sequence, event.prev_hash) == (2, first.hash) and first.prev_hash == GENESIS
    assert event.tenant == tenant and event.chain.key == chain_key_for(tenant)
    assert (event.chain.last_sequence, event.chain.last_hash) == (2, event.hash)
    assert not event._state.adding
    assert event_hash(event_record(event, chain_key_for(tenant))) == event.hash
    assert set(AuditEventSubject.objects.filter(event=event).values_list("subject_type", "subject_id")) == {
        ("patient", "p-1"),
        ("patient", "p-2"),
    }
    chain = chain_for(tenant)
    assert chain is not None and (chain.last_sequence, chain.last_hash) == (2, event.hash)
    assert chain_verify(chain=chain).ok


def test_non_ascii_detail_values_are_refused_and_non_ascii_keys_verify(tenant_a):
    with pytest.raises(AuditDetailError):
        audit_record(action="receipt.viewed", tenant=tenant_a, details={"ref": "café"})
    with pytest.raises(AuditDetailError):
        audit_record(action="ledger.viewed", tenant=tenant_a, details={"patients": ["p-1", "p-é"]})
    assert not AuditEvent.objects.exists()
    event = audit_record(action="receipt.viewed", tenant=tenant_a, details={"clé": "x"})
    reloaded = AuditEvent.objects.get(pk=event.pk)
    assert reloaded.details == {"clé": "x"}
    assert event_hash(event_record(reloaded, chain_key_for(tenant_a))) == event.hash


def _three_events_with_the_clock_going_back(tenant: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer that read the clock before waiting for the lock, or a server whose clock is behind."""
    ahead = datetime(2036, 1, 1, 12, tzinfo=UTC)
    monkeypatch.setattr(timezone, "now", lambda: ahead)
    first = audit_record(action="receipt.viewed", tenant=tenant)
    behind = ahead.replace(year=2035)
    monkeypatch.setattr(timezone, "now", lambda: behind)
    second = audit_record(action="receipt.viewed", tenant=tenant)
    later = ahead.replace(second=5)
    monkeypatch.setattr(timezone, "now", lambda: later)
    third = audit_record(action="receipt.viewed", tenant=tenant)
    stored = list(AuditEvent.objects.filter(tenant=tenant).order_by("sequence").values_list("occurred_at", flat=True))
    assert stored == [ahead, ahead, later] == [first.occurred_at, second.occurred_at, third.occurred_at]
    chain = chain_for(tenant)
    assert chain is not None and chain.updated_at == later
    assert chain_verify(chain=chain).ok


@pytest.mark.postgres
def test_an_event_is_never_dated_before_its_predecessor_on_postgresql(tenant_a, monkeypatch):
    _three_events_with_the_clock_going_back(tenant_a, monkeypatch)


def test_an_event_is_never_dated_before_its_predecessor_on_the_orm_path(tenant_a, monkeypatch):
    monkeypatch.setattr(recorder, "FAST_PATH_VENDORS", frozenset())
    _three_events_with_the_clock_going_back(tenant_a, monkeypatch)
