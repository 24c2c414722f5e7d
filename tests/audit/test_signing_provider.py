"""Checkpoints and export seals signed by the key provider's key; verified in place and offline."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import call_command

from audit.chain import checkpoint_message, digest_text
from audit.exportformat import footer_message
from audit.models import AuditCheckpoint, AuditEvent, AuditExport
from audit.services.exports import export_build, export_read_all
from audit.services.integrity import chain_for, chain_verify, checkpoint_sign
from audit.signing import HmacSigner, ProviderSigner, current_signer
from audit.tasks import audit_checkpoint_sign_all
from portal.tenancy.context import tenant_scope
from security.crypto.providers import LocalKeyProvider, set_provider
from tests.audit.conftest import fill, rewrite_chain_from, run_verifier
from tests.security.crypto_support import local_keys_fixture, new_master_key

pytestmark = pytest.mark.django_db
local_keys = local_keys_fixture
TABLE = "audit_auditevent"


@pytest.fixture(autouse=True)
def _provider_signs(settings, tmp_path):
    settings.SETTLE_AUDIT_SIGNER = "provider"
    settings.SETTLE_AUDIT_EXPORT_DIR = str(tmp_path / "exports")


def _attacker() -> ProviderSigner:
    """Someone with write access to the database but not the master key: a key of their own."""
    return ProviderSigner(LocalKeyProvider(master_keys=[new_master_key()]))


def test_the_beat_task_signs_with_the_provider_key_and_verify_audit_checks_it(tenant_a, local_keys, capsys):
    fill(tenant_a, 4)
    assert audit_checkpoint_sign_all.delay().get() == 1
    checkpoint = AuditCheckpoint.objects.get(chain=chain_for(tenant_a))
    assert checkpoint.algorithm == "Ed25519" and checkpoint.key_id == local_keys.signing_key_id()
    result = chain_verify(chain=chain_for(tenant_a))
    assert result.ok and result.signatures_checked and result.checkpoints_checked == 1
    call_command("verify_audit", "--tenant", tenant_a.slug)
    assert "1 signed checkpoints agree" in capsys.readouterr().out


def test_a_rewritten_whole_chain_contradicts_the_provider_signed_checkpoint(tenant_a, local_keys, tamper):
    fill(tenant_a, 6)
    chain = chain_for(tenant_a)
    assert checkpoint_sign(chain=chain) is not None
    with tamper() as sql:
        rewrite_chain_from(sql, chain, 1)
    result = chain_verify(chain=chain)
    assert not result.ok and result.problems[0].kind == "checkpoint_mismatch"


def test_a_rewritten_chain_with_checkpoints_re_signed_by_another_key_fails(tenant_a, local_keys, tamper):
    fill(tenant_a, 6)
    chain = chain_for(tenant_a)
    original = checkpoint_sign(chain=chain)
    assert original is not None
    attacker = _attacker()
    with tamper() as sql:
        rewrite_chain_from(sql, chain, 1)
        # Re-sign the checkpoint over the forged head with the attacker's own key;
        # the key id even carries the attacker's public key, and the signature is valid for it.
        forged_hash = AuditEvent.objects.get(chain=chain, sequence=original.sequence).hash
        signed_at = "2026-01-01T00:00:00.000000Z"
        message = checkpoint_message(
            chain=chain.key, sequence=original.sequence, head_hash=forged_hash, signed_at=signed_at
        )
        sql(
            "UPDATE audit_auditcheckpoint SET head_hash = %s, signed_at = %s, key_id = %s, algorithm = %s, "
            "signature = %s WHERE id = %s",
            [
                forged_hash,
                datetime(2026, 1, 1, tzinfo=UTC),
                attacker.key_id,
                attacker.algorithm,
                attacker.sign(message),
                original.pk,
            ],
        )
    result = chain_verify(chain=chain)
    assert not result.ok
    assert result.problems[0].kind == "bad_signature" and "untrusted key" in result.problems[0].message
    # A signature that is valid for the attacker's key is still refused: only the provider's keys count.
    trusted = ProviderSigner(local_keys)
    assert trusted.verify(message, attacker.sign(message), key_id=attacker.key_id, algorithm="Ed25519") is False
    assert attacker.verify(message, attacker.sign(message), key_id=attacker.key_id, algorithm="Ed25519") is True


def test_old_hmac_checkpoints_verify_while_the_hmac_key_is_configured(tenant_a, local_keys, settings):
    fill(tenant_a, 3)
    chain = chain_for(tenant_a)
    settings.SETTLE_AUDIT_SIGNER = "hmac"
    assert checkpoint_sign(chain=chain).algorithm == "HMAC-SHA256"
    fill(tenant_a, 2)
    settings.SETTLE_AUDIT_SIGNER = "provider"
    assert checkpoint_sign(chain=chain).algorithm == "Ed25519"
    result = chain_verify(chain=chain)
    assert result.ok and result.checkpoints_checked == 2
    # Where the HMAC key is gone, its checkpoints cannot be vouched for: said, not ignored.
    without_hmac = chain_verify(chain=chain, signer=ProviderSigner(local_keys, legacy_hmac=None))
    assert [p.kind for p in without_hmac.problems] == ["bad_signature"]


def test_a_master_key_change_keeps_earlier_checkpoints_verifiable(tenant_a, local_keys):
    fill(tenant_a, 3)
    chain = chain_for(tenant_a)
    checkpoint_sign(chain=chain)
    set_provider("local", LocalKeyProvider(master_keys=[new_master_key(), local_keys.master_keys[0]]))
    fill(tenant_a, 2)
    checkpoint_sign(chain=chain)
    keys = set(AuditCheckpoint.objects.filter(chain=chain).values_list("key_id", flat=True))
    assert len(keys) == 2
    assert chain_verify(chain=chain).ok
    # Once the old master key is dropped, its checkpoints no longer verify in place.
    set_provider("local", LocalKeyProvider(master_keys=[new_master_key()]))
    assert not chain_verify(chain=chain).ok


# --- Offline: exports pinned to the provider's public key ------------------------------------


def _export(tenant) -> bytes:
    now = datetime.now(tz=UTC)
    with tenant_scope(tenant):
        export = AuditExport.objects.create(
            tenant=tenant, date_from=now - timedelta(days=1), date_to=now + timedelta(days=1)
        )
        export = export_build(export=export)
        return export_read_all(export=export, kind="jsonl")


@pytest.fixture
def signed_export(tenant_a, local_keys) -> bytes:
    fill(tenant_a, 8)
    chain = chain_for(tenant_a)
    assert chain is not None
    checkpoint_sign(chain=chain)
    fill(tenant_a, 2)
    return _export(tenant_a)


def _pem_file(tmp_path: Path, signer: ProviderSigner, name: str = "audit-signing.pem") -> str:
    path = tmp_path / name
    path.write_text(signer.public_key.pem())
    return str(path)


def test_an_export_verifies_offline_with_the_pinned_public_key(signed_export, local_keys, tmp_path):
    signer = ProviderSigner(local_keys)
    footer = json.loads(signed_export.splitlines()[-1])
    assert footer["algorithm"] == "Ed25519" and footer["key_id"] == signer.key_id
    code, output = run_verifier(
        tmp_path, signed_export, "--public-key", _pem_file(tmp_path, signer), "--require-signatures"
    )
    assert code == 0, output
    assert "1 signed checkpoints agree" in output
    assert f"verified with pinned key(s) {signer.public_key.fingerprint}" in output


def test_a_key_other_than_the_pinned_one_is_a_failure(signed_export, tmp_path):
    other = _pem_file(tmp_path, _attacker(), "other.pem")
    code, output = run_verifier(tmp_path, signed_export, "--public-key", other)
    assert code == 1 and "not the pinned key" in output


def test_without_a_pinned_key_signatures_are_not_trusted_but_the_key_is_named(signed_export, local_keys, tmp_path):
    code, output = run_verifier(tmp_path, signed_export)
    assert code == 0 and "signatures were NOT checked" in output
    assert ProviderSigner(local_keys).public_key.fingerprint in output
    assert run_verifier(tmp_path, signed_export, "--require-signatures")[0] == 2


def test_a_legacy_hmac_key_alone_does_not_vouch_for_provider_signatures(signed_export, tmp_path):
    import base64

    from audit import conf

    key_file = tmp_path / "hmac.key"
    key_file.write_text(base64.b64encode(conf.signing_key()).decode())
    code, output = run_verifier(tmp_path, signed_export, "--key-file", str(key_file))
    assert code == 1 and "pin with --public-key" in output


def test_an_export_rewritten_and_re_sealed_with_another_key_fails_against_the_pin(signed_export, local_keys, tmp_path):
    attacker = _attacker()
    lines = signed_export.splitlines(keepends=True)
    header = json.loads(lines[0])
    header["tenant"] = "someone-else"
    body = json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\n" + b"".join(lines[1:-1])
    footer = json.loads(lines[-1])
    footer.update(sha256=digest_text(hashlib.sha256(body).digest()), key_id=attacker.key_id)
    footer["signature"] = attacker.sign(footer_message(footer))
    forged = body + json.dumps(footer, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    pinned = _pem_file(tmp_path, ProviderSigner(local_keys))
    code, output = run_verifier(tmp_path, forged, "--public-key", pinned)
    assert code == 1 and "seal" in output and attacker.public_key.fingerprint in output
    # Trust is exactly the pinned set: pin the attacker's key too and the forgery passes.
    attacker_pem = _pem_file(tmp_path, attacker, "attacker.pem")
    assert run_verifier(tmp_path, forged, "--public-key", pinned, "--public-key", attacker_pem)[0] == 0


def test_the_public_key_command_writes_the_pem_the_verifier_pins(signed_export, local_keys, tmp_path, capsys):
    out = tmp_path / "published.pem"
    call_command("audit_signing_key", "--out", str(out))
    assert ProviderSigner(local_keys).public_key.fingerprint in capsys.readouterr().out
    assert run_verifier(tmp_path, signed_export, "--public-key", str(out), "--require-signatures")[0] == 0


def test_current_signer_follows_the_setting(local_keys, settings):
    assert isinstance(current_signer(), ProviderSigner)
    settings.SETTLE_AUDIT_SIGNER = "hmac"
    assert isinstance(current_signer(), HmacSigner)
