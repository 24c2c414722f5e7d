"""An event's details are stored as the canonical text its hash covers, and read back from that text."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from audit import recorder
from audit.chain import canonical_json
from audit.models import AuditChain, AuditEvent
from audit.recorder import audit_record
from audit.services.integrity import chain_verify
from tests.audit.conftest import fill

pytestmark = pytest.mark.django_db

# jsonb would store these keys as source, attempt, currency, amount_minor (by length).
DETAILS = {"source": "checkout", "amount_minor": 18640, "currency": "usd", "attempt": 2, "patients": ["p-2", "p-1"]}


def _stored_text(event: AuditEvent) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT details::text FROM audit_auditevent WHERE id = %s", [event.pk])
        return str(cursor.fetchone()[0])


@pytest.mark.postgres
@pytest.mark.parametrize("path", ["database function", "orm"])
def test_details_are_stored_as_the_canonical_json(path, tenant_a, monkeypatch):
    if path == "orm":
        monkeypatch.setattr(recorder, "FAST_PATH_VENDORS", frozenset())
    event = audit_record(action="payment.succeeded", tenant=tenant_a, details=DETAILS)
    assert _stored_text(event) == canonical_json(DETAILS)
    assert (
        _stored_text(event)
        == '{"amount_minor":18640,"attempt":2,"currency":"usd","patients":["p-2","p-1"],"source":"checkout"}'
    )
    reloaded = AuditEvent.objects.get(pk=event.pk)
    assert reloaded.details == DETAILS
    assert AuditEvent.objects.filter(details__currency="usd", details__attempt=2).get() == event


def test_details_round_trip_on_any_database(tenant_a):
    event = audit_record(action="payment.succeeded", tenant=tenant_a, details=DETAILS)
    assert AuditEvent.objects.get(pk=event.pk).details == DETAILS
    assert chain_verify(chain=AuditChain.objects.get(tenant=tenant_a)).ok


@pytest.mark.postgres
def test_a_json_string_that_reads_as_the_object_is_a_change(tenant_a, tamper):
    """The driver's own json decoding would return the string's text, which Django would parse again."""
    fill(tenant_a, 3)  # details {"n": 0}, {"n": 1}, {"n": 2}
    chain = AuditChain.objects.get(tenant=tenant_a)
    as_a_string = json.dumps(canonical_json({"n": 1}))  # the JSON string "{\"n\":1}"
    with tamper() as sql:
        sql("UPDATE audit_auditevent SET details = %s WHERE chain_id = %s AND sequence = 2", [as_a_string, chain.pk])
    assert AuditEvent.objects.get(chain=chain, sequence=2).details == '{"n":1}'
    result = chain_verify(chain=chain)
    assert result.first_bad_sequence == 2, result.summary()
