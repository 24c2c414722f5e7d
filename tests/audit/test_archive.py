"""Retention: old months go to S3 (moto's server on loopback) before they leave the hot table."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine

from audit.models import AuditArchiveSegment, AuditChain, AuditEvent
from audit.services.archive import ArchiveError, archive_due, archive_month
from audit.services.integrity import chain_verify
from audit.signing import ProviderSigner
from audit.verify import main as verify_main
from security.crypto.providers import get_signing_provider
from tests.audit.conftest import BUCKET, fill


def _history(tenant) -> None:
    for month in (1, 2, 3):
        with time_machine.travel(datetime(2025, month, 10, 12, tzinfo=UTC), tick=True):
            fill(tenant, 4)
    fill(tenant, 3)  # recent: stays hot


@pytest.mark.django_db
def test_old_months_are_archived_verified_and_leave_the_hot_table(
    tenant_a, archive_settings, tmp_path, django_capture_on_commit_callbacks
):
    _history(tenant_a)
    chain = AuditChain.objects.get(tenant=tenant_a)
    with django_capture_on_commit_callbacks(execute=True):
        assert archive_due(client=archive_settings) == 3
    segments = list(AuditArchiveSegment.objects.filter(chain=chain).order_by("first_sequence"))
    assert [(s.period, s.first_sequence, s.last_sequence) for s in segments] == [
        ("2025-01", 1, 4),
        ("2025-02", 5, 8),
        ("2025-03", 9, 12),
    ]
    # Only the recent events (and the archive events themselves) stay hot.
    assert not AuditEvent.objects.filter(chain=chain, sequence__lte=12).exists()
    assert AuditEvent.objects.filter(chain=chain, action="audit.archived").count() == 3
    # The hot chain still verifies, anchored on the last archived segment.
    result = chain_verify(chain=chain)
    assert result.ok, result.summary()
    assert result.first_sequence == 13
    # Everything in the bucket verifies offline through the manifest.
    for item in archive_settings.list_objects_v2(Bucket=BUCKET)["Contents"]:
        if item["Key"].startswith(f"audit/{chain.key}/"):
            body = archive_settings.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
            (tmp_path / Path(item["Key"]).name).write_bytes(body)
    key_file = tmp_path / "audit-signing.pem"
    key_file.write_text(ProviderSigner(get_signing_provider()).public_key.pem())
    assert verify_main([str(tmp_path / "manifest.json"), "--public-key", str(key_file)]) == 0
    # A month altered in storage is caught.
    february = tmp_path / "2025-02.jsonl"
    february.write_bytes(february.read_bytes().replace(b'"R-1"', b'"R-7"', 1))
    assert verify_main([str(tmp_path / "manifest.json"), "--public-key", str(key_file)]) == 1


@pytest.mark.django_db
def test_hot_months_and_out_of_order_months_are_refused(tenant_a, archive_settings):
    _history(tenant_a)
    chain = AuditChain.objects.get(tenant=tenant_a)
    now = datetime.now(tz=UTC)
    with pytest.raises(ArchiveError, match="hot period"):
        archive_month(chain=chain, period=now.strftime("%Y-%m"), client=archive_settings)
    with pytest.raises(ArchiveError, match="archive them first"):
        archive_month(chain=chain, period="2025-02", client=archive_settings)
    assert AuditEvent.objects.filter(chain=chain).count() == 15


@pytest.mark.django_db
def test_a_broken_month_is_not_archived(tenant_a, archive_settings, tamper):
    _history(tenant_a)
    chain = AuditChain.objects.get(tenant=tenant_a)
    with tamper() as sql:
        sql("UPDATE audit_auditevent SET target_id = 'X' WHERE chain_id = %s AND sequence = 2", [chain.pk])
    with pytest.raises(ArchiveError, match="does not verify"):
        archive_month(chain=chain, period="2025-01", client=archive_settings)
    assert not AuditArchiveSegment.objects.exists()


def test_moto_fixture_is_loopback_only(moto_s3):
    assert moto_s3.startswith("http://127.0.0.1:")
    assert os.environ.get("SETTLE_AUDIT_ARCHIVE_BUCKET") in (None, "", BUCKET)


def _download(client, chain, folder: Path) -> None:
    for item in client.list_objects_v2(Bucket=BUCKET)["Contents"]:
        if item["Key"].startswith(f"audit/{chain.key}/"):
            (folder / Path(item["Key"]).name).write_bytes(
                client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
            )


@pytest.mark.django_db
def test_an_archive_signed_by_the_provider_verifies_against_its_pinned_public_key(
    tenant_a, archive_settings, tmp_path, settings, django_capture_on_commit_callbacks
):
    from audit.signing import ProviderSigner, current_signer
    from security.crypto.providers import LocalKeyProvider
    from tests.security.crypto_support import new_master_key

    settings.SETTLE_AUDIT_SIGNER = "provider"
    _history(tenant_a)
    chain = AuditChain.objects.get(tenant=tenant_a)
    with django_capture_on_commit_callbacks(execute=True):
        assert archive_due(client=archive_settings) == 3
    _download(archive_settings, chain, tmp_path)
    manifest = (tmp_path / "manifest.json").read_text()
    signer = current_signer()
    assert isinstance(signer, ProviderSigner)
    assert f'"key_id": "{signer.key_id}"' in manifest and '"algorithm": "Ed25519"' in manifest
    pinned = tmp_path / "audit-signing.pem"
    pinned.write_text(signer.public_key.pem())
    assert verify_main([str(tmp_path / "manifest.json"), "--public-key", str(pinned), "--require-signatures"]) == 0
    # Another key pinned: the manifest (and every segment seal) is refused.
    other = tmp_path / "other.pem"
    other.write_text(ProviderSigner(LocalKeyProvider(master_keys=[new_master_key()])).public_key.pem())
    assert verify_main([str(tmp_path / "manifest.json"), "--public-key", str(other)]) == 1
