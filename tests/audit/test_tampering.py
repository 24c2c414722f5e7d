"""Tampering behind the app's back: verification names the first bad sequence."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.utils import timezone

from audit.chain import GENESIS, event_hash, format_time, parse_time
from audit.models import AuditChain, AuditEvent
from audit.services.integrity import chain_verify, checkpoint_sign
from tests.audit.conftest import fill, rewrite_chain_from

pytestmark = pytest.mark.django_db

TABLE = "audit_auditevent"


@pytest.fixture
def chain(tenant_a):
    fill(tenant_a, 10)
    return AuditChain.objects.get(tenant=tenant_a)


def test_an_untouched_chain_verifies(chain):
    result = chain_verify(chain=chain)
    assert result.ok, result.summary()
    assert result.events_checked == 10
    assert "intact" in result.summary()


def test_an_edited_event_is_named(chain, tamper):
    with tamper() as sql:
        sql(f"UPDATE {TABLE} SET target_id = 'R-999' WHERE chain_id = %s AND sequence = 4", [chain.pk])
    result = chain_verify(chain=chain)
    assert result.first_bad_sequence == 4
    assert result.problems[0].kind == "altered"
    assert "sequence 4" in result.summary()


def test_an_edited_detail_is_named(chain, tamper):
    with tamper() as sql:
        sql(f"UPDATE {TABLE} SET details = %s WHERE chain_id = %s AND sequence = 7", ['{"n": 70}', chain.pk])
    assert chain_verify(chain=chain).first_bad_sequence == 7


def test_a_deleted_event_is_named(chain, tamper):
    with tamper() as sql:
        _delete(sql, chain, "sequence = 5")
    result = chain_verify(chain=chain)
    assert result.first_bad_sequence == 5
    assert result.problems[0].kind == "missing"


def test_deleting_the_newest_events_is_caught_by_the_head(chain, tamper):
    with tamper() as sql:
        _delete(sql, chain, "sequence >= 9")
    result = chain_verify(chain=chain)
    assert result.first_bad_sequence == 9
    assert result.problems[0].kind == "truncated"


def _delete(sql, chain, where: str) -> None:
    rows = f"SELECT id FROM {TABLE} WHERE chain_id = %s AND {where}"
    sql(f"DELETE FROM audit_auditeventsubject WHERE event_id IN ({rows})", [chain.pk])
    sql(f"DELETE FROM {TABLE} WHERE chain_id = %s AND {where}", [chain.pk])


def _forged(chain, sequence: int, prev_hash: str) -> dict:
    record = {
        "chain": chain.key,
        "sequence": sequence,
        "public_id": str(uuid.uuid4()),
        "occurred_at": format_time(timezone.now()),
        "actor_user_id": None,
        "actor_role": "guest",
        "action": "receipt.viewed",
        "target_type": "receipt",
        "target_id": "R-forged",
        "outcome": "success",
        "source_ip": None,
        "request_id": "",
        "details": {},
        "prev_hash": prev_hash,
    }
    record["hash"] = event_hash(record)
    return record


def _insert(sql, chain, record) -> None:
    sql(
        f"INSERT INTO {TABLE} (public_id, chain_id, sequence, tenant_id, occurred_at, actor_role, action, "
        "target_type, target_id, outcome, request_id, details, prev_hash, hash) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [
            record["public_id"] if connection.vendor == "postgresql" else record["public_id"].replace("-", ""),
            chain.pk,
            record["sequence"],
            chain.tenant_id,
            parse_time(record["occurred_at"]),
            "guest",
            record["action"],
            "receipt",
            record["target_id"],
            "success",
            "",
            "{}",
            record["prev_hash"],
            record["hash"],
        ],
    )


def test_an_inserted_event_is_named_where_it_was_inserted(chain, tamper):
    """A careful forger renumbers the later events and hashes the new one correctly."""
    hash_4 = AuditEvent.objects.get(chain=chain, sequence=4).hash
    with tamper() as sql:
        sql(f"UPDATE {TABLE} SET sequence = sequence + 1000 WHERE chain_id = %s AND sequence >= 5", [chain.pk])
        sql(f"UPDATE {TABLE} SET sequence = sequence - 999 WHERE chain_id = %s AND sequence > 1000", [chain.pk])
        _insert(sql, chain, _forged(chain, 5, hash_4))
        sql("UPDATE audit_auditchain SET last_sequence = 11 WHERE id = %s", [chain.pk])
    result = chain_verify(chain=chain)
    assert result.first_bad_sequence == 5
    assert "inserted" in result.summary()


def test_an_event_appended_without_the_recorder_is_named(chain, tamper):
    head = AuditEvent.objects.get(chain=chain, sequence=10)
    with tamper() as sql:
        _insert(sql, chain, _forged(chain, 11, head.hash))
    result = chain_verify(chain=chain)
    assert result.first_bad_sequence == 11
    assert result.problems[0].kind == "appended"


def test_reordered_events_are_named(chain, tamper):
    with tamper() as sql:
        sql(f"UPDATE {TABLE} SET sequence = 1006 WHERE chain_id = %s AND sequence = 6", [chain.pk])
        sql(f"UPDATE {TABLE} SET sequence = 6 WHERE chain_id = %s AND sequence = 7", [chain.pk])
        sql(f"UPDATE {TABLE} SET sequence = 7 WHERE chain_id = %s AND sequence = 1006", [chain.pk])
    result = chain_verify(chain=chain)
    assert result.first_bad_sequence == 6
    assert "reordered" in result.summary()


def test_a_full_rewrite_with_recomputed_hashes_contradicts_a_signed_checkpoint(chain, tamper):
    checkpoint = checkpoint_sign(chain=chain)
    assert checkpoint is not None and checkpoint.sequence == 10
    fill(chain.tenant, 2)  # the checkpoint event is 11; these are 12-13
    # Rewrite from event 3 on, recomputing every hash and the head, as an
    # attacker who knows the algorithm (but not the signing key) would.
    with tamper() as sql:
        rewrite_chain_from(sql, chain, 3)
    result = chain_verify(chain=chain)
    assert not result.ok
    assert result.problems[0].kind == "checkpoint_mismatch"
    assert result.first_bad_sequence == 10


def test_a_forged_checkpoint_signature_is_caught(chain, tamper):
    checkpoint = checkpoint_sign(chain=chain)
    with tamper() as sql:
        sql(
            "UPDATE audit_auditcheckpoint SET signature = %s WHERE id = %s",
            ["AAAA" + checkpoint.signature[4:], checkpoint.pk],
        )
    result = chain_verify(chain=chain)
    assert result.problems[0].kind == "bad_signature"


def test_the_first_event_must_link_to_genesis(chain, tamper):
    with tamper() as sql:
        _delete(sql, chain, "sequence = 1")
    assert chain_verify(chain=chain).first_bad_sequence == 1
    assert GENESIS == "A" * 43
