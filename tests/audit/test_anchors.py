"""A database superuser rewrites or cuts a chain and deletes the checkpoint rows that would betray it.

Each signed checkpoint is also anchored outside the database (an append-only
file here; S3 with Object Lock in test_anchors_s3.py), so `verify_audit`, the
console's verification and the offline verifier all still see it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit import conf
from audit.anchors import AnchorError, read_anchor_file
from audit.models import AuditChain, AuditCheckpoint, AuditCheckpointAnchor
from audit.services import anchoring
from audit.services.integrity import chain_for, chain_verify, checkpoint_sign, checkpoint_sign_all
from portal.tenancy.context import tenant_scope
from tests.audit.conftest import (
    cut_chain_at,
    delete_checkpoints_from,
    export_now,
    fill,
    rewrite_chain_from,
    run_verifier,
)

pytestmark = pytest.mark.django_db
EVENTS = "audit_auditevent"


@pytest.fixture(autouse=True)
def _export_dir(settings, tmp_path):
    settings.SETTLE_AUDIT_EXPORT_DIR = str(tmp_path / "exports")


@pytest.fixture
def chain(tenant_a) -> AuditChain:
    """Events 1-10, checkpoint of 10 (event 11), 12-13, checkpoint of 13 (event 14), 15-16."""
    fill(tenant_a, 10)
    chain = AuditChain.objects.get(tenant=tenant_a)
    first, _, second = checkpoint_sign(chain=chain), fill(tenant_a, 2), checkpoint_sign(chain=chain)
    assert first is not None and first.sequence == 10
    assert second is not None and second.sequence == 13
    fill(tenant_a, 2)
    return chain


def _anchor_file(chain: AuditChain) -> Path:
    return conf.anchor_dir() / f"{chain.key}.jsonl"


def _verify_audit_fails(tenant, capsys) -> str:
    with pytest.raises(CommandError) as failed:
        call_command("verify_audit", "--tenant", tenant.slug)
    assert failed.value.returncode == 1
    return capsys.readouterr().err


def test_every_checkpoint_is_anchored_as_it_is_made_and_an_untouched_chain_passes_everywhere(
    chain, tenant_a, tmp_path, anchor_key_file, capsys
):
    anchors = read_anchor_file(_anchor_file(chain))
    assert [(c, a.sequence) for c, a in anchors] == [(chain.key, 10), (chain.key, 13)]
    rows = {c.sequence: c for c in AuditCheckpoint.objects.filter(chain=chain)}
    assert all(a.hash == rows[a.sequence].head_hash and a.signature == rows[a.sequence].signature for _, a in anchors)
    assert AuditCheckpointAnchor.objects.filter(chain=chain).count() == 2

    result = chain_verify(chain=chain)
    assert result.ok, result.summary()
    assert result.anchor_sequence == 13 and "latest checkpoint anchored in" in result.summary()
    call_command("verify_audit", "--tenant", tenant_a.slug)
    assert "(event 13)" in capsys.readouterr().out

    data = export_now(tenant_a)
    code, output = run_verifier(tmp_path, data, "--public-key", anchor_key_file, "--anchors", str(_anchor_file(chain)))
    assert code == 0, output
    assert "intact" in output


def test_a_rewrite_from_k_with_recomputed_hashes_and_the_checkpoint_rows_deleted_fails_both_verifiers(
    chain, tenant_a, tamper, tmp_path, anchor_key_file, capsys
):
    with tamper() as sql:
        rewrite_chain_from(sql, chain, 3)
        delete_checkpoints_from(sql, chain, 3)
    # Without anchors nothing in the database contradicts the forged chain any more.
    assert not AuditCheckpoint.objects.filter(chain=chain).exists()

    result = chain_verify(chain=chain)
    assert not result.ok
    assert result.first_bad_sequence == 10
    kinds = {(p.sequence, p.kind) for p in result.problems}
    assert {(10, "checkpoint_deleted"), (13, "checkpoint_mismatch")} <= kinds
    assert "checkpoint rows were deleted" in result.summary()
    assert any("is anchored outside the database" in p.message for p in result.problems if p.sequence == 10)

    # The export the application builds from the forged database carries the latest anchor.
    data = export_now(tenant_a)
    code, output = run_verifier(tmp_path, data, "--public-key", anchor_key_file)
    assert code == 1
    assert "TAMPERED" in output and "sequence 13" in output
    assert "sequence 13: differs from the checkpoint signed at" in output and "rewritten" in output
    # Held to the anchor file itself, the deleted checkpoint rows show as well.
    code, output = run_verifier(tmp_path, data, "--public-key", anchor_key_file, "--anchors", str(_anchor_file(chain)))
    assert code == 1
    assert "first bad sequence 10" in output and "checkpoint rows were deleted" in output
    assert "checkpoint rows were deleted" in _verify_audit_fails(tenant_a, capsys)


def test_deleting_the_newest_events_after_the_last_checkpoint_and_rewinding_the_head_fails_both_verifiers(
    chain, tenant_a, tamper, tmp_path, anchor_key_file, capsys
):
    """The last checkpoint row stays; the events after it, its own checkpoint event included, go."""
    with tamper() as sql:
        cut_chain_at(sql, chain, 14)
    result = chain_verify(chain=chain)
    assert not result.ok and result.first_bad_sequence == 14
    assert result.problems[0].kind == "truncated"
    assert "recorded by event 14, which is missing" in result.summary()

    code, output = run_verifier(tmp_path, export_now(tenant_a), "--public-key", anchor_key_file)
    assert code == 1
    assert "first bad sequence 14" in output and "removed from the end" in output
    # The export's own audit event now sits at 14: still not the checkpoint's event.
    assert "was recorded by event 14, but event 14 is 'audit.export_built'" in _verify_audit_fails(tenant_a, capsys)


def test_deleting_the_newest_events_and_the_checkpoint_rows_over_them_fails_both_verifiers(
    chain, tenant_a, tamper, tmp_path, anchor_key_file, capsys
):
    """The insider also deletes the newest checkpoint row, so the remaining last checkpoint (10) and
    its event (11) are intact: only the anchor of 13 knows the chain was longer."""
    with tamper() as sql:
        delete_checkpoints_from(sql, chain, 11)
        cut_chain_at(sql, chain, 12)
    result = chain_verify(chain=chain)
    assert not result.ok and result.first_bad_sequence == 12
    assert result.problems[0].kind == "truncated"
    assert "anchored outside the database covers event 13 but the chain ends at 11" in result.summary()

    data = export_now(tenant_a)
    code, output = run_verifier(tmp_path, data, "--public-key", anchor_key_file)
    assert code == 1 and "first bad sequence 12" in output
    assert "covers event 13 but the chain ends at 11" in output
    code, output = run_verifier(tmp_path, data, "--public-key", anchor_key_file, "--anchors", str(_anchor_file(chain)))
    assert code == 1 and "anchored outside the database covers event 13 but the chain ends at 11" in output
    assert "events were removed from the end" in _verify_audit_fails(tenant_a, capsys)


def test_the_console_verification_fails_on_a_rewrite_too(chain, tenant_a, tamper):
    from audit.models import AuditVerification, VerificationStatus
    from audit.services.integrity import verification_run

    with tamper() as sql:
        rewrite_chain_from(sql, chain, 5)
        delete_checkpoints_from(sql, chain, 5)
    with tenant_scope(tenant_a):
        verification = AuditVerification.objects.create(tenant=tenant_a)
    verification_run(verification=verification)
    verification.refresh_from_db()
    assert verification.status == VerificationStatus.FAILED
    assert verification.first_bad_sequence == 10
    assert "anchored outside the database" in verification.message


def test_a_checkpoint_row_deleted_before_it_was_anchored_is_named_by_the_chains_own_event(tenant_a, tamper):
    """The store was down, so checkpoint 4 has no anchor yet; its audit.checkpoint_signed event remains."""

    class Down:
        kind = "file"

        def put(self, **kwargs):
            raise OSError("store unavailable")

        def read(self, **kwargs):
            return anchoring.AnchorSet(source="nowhere")

        def describe(self) -> str:
            return "nowhere"

    fill(tenant_a, 4)
    chain = chain_for(tenant_a)
    checkpoint = checkpoint_sign(chain=chain, store=Down())
    assert checkpoint is not None and not AuditCheckpointAnchor.objects.filter(checkpoint=checkpoint).exists()
    with tamper() as sql:
        delete_checkpoints_from(sql, chain, 1)
    result = chain_verify(chain=chain)
    assert [(p.sequence, p.kind) for p in result.problems] == [(4, "checkpoint_deleted")]
    assert "event 5 records a signed checkpoint of event 4" in result.summary()


def test_a_checkpoint_event_rewritten_into_another_act_is_named(chain, tamper):
    with tamper() as sql:
        sql(f"UPDATE {EVENTS} SET action = 'receipt.viewed' WHERE chain_id = %s AND sequence = 14", [chain.pk])  # noqa: S608
        rewrite_chain_from(sql, chain, 14)
    problems = {(p.sequence, p.kind) for p in chain_verify(chain=chain).problems}
    assert (14, "checkpoint_event") in problems


def test_an_unreachable_store_leaves_checkpoints_pending_and_the_next_run_anchors_them(tenant_a, settings, tmp_path):
    fill(tenant_a, 3)
    chain = chain_for(tenant_a)
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the anchor folder should be")
    settings.SETTLE_AUDIT_ANCHOR_DIR = str(blocked)
    checkpoint = checkpoint_sign(chain=chain)  # committed, but not anchored
    assert checkpoint is not None and not AuditCheckpointAnchor.objects.exists()
    settings.SETTLE_AUDIT_ANCHOR_DIR = str(tmp_path / "anchors")
    fill(tenant_a, 1)
    assert checkpoint_sign_all() == 1
    anchored = [a.sequence for _, a in read_anchor_file(tmp_path / "anchors" / f"{chain.key}.jsonl")]
    assert anchored == [3, 5]  # the pending one first
    assert chain_verify(chain=chain).ok


def test_two_different_anchors_for_one_sequence_are_tampering(chain):
    path = _anchor_file(chain)
    lines = path.read_bytes().splitlines(keepends=True)
    forged = lines[-1].replace(b'"hash":"', b'"hash":"X', 1)
    path.write_bytes(b"".join(lines) + forged)
    result = chain_verify(chain=chain)
    assert any(p.kind == "anchor_store" and "two different anchors" in p.message for p in result.problems)
    # A line that is not an anchor at all: the store is unreadable and nothing is vouched for.
    path.write_bytes(b"".join(lines) + b'{"type":"note"}\n')
    with pytest.raises(AnchorError, match="line 3 is not a checkpoint anchor"):
        chain_verify(chain=chain)


def test_production_refuses_the_file_store(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.PRODUCTION = True
    settings.SETTLE_AUDIT_ANCHOR_BUCKET = ""
    with pytest.raises(ImproperlyConfigured, match="SETTLE_AUDIT_ANCHOR_BUCKET"):
        anchoring.anchor_store()
