"""Production's anchor store: S3 with Object Lock (moto's server on loopback)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from audit.services.anchoring import S3AnchorStore, anchor_store
from audit.services.integrity import chain_for, chain_verify, checkpoint_sign
from tests.audit.conftest import (
    cut_chain_at,
    delete_checkpoints_from,
    export_now,
    fill,
    rewrite_chain_from,
    run_verifier,
)

pytestmark = pytest.mark.django_db
BUCKET = "settle-audit-anchors-test"


@pytest.fixture
def s3_anchors(settings, moto_s3, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings.SETTLE_AUDIT_EXPORT_DIR = str(tmp_path / "exports")
    settings.SETTLE_AUDIT_ARCHIVE_ENDPOINT_URL = moto_s3
    settings.SETTLE_AUDIT_ANCHOR_BUCKET = BUCKET
    store = anchor_store()
    assert isinstance(store, S3AnchorStore)
    client = store.client
    try:
        client.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    return client


@pytest.fixture
def chain(tenant_a, s3_anchors):
    fill(tenant_a, 10)
    chain = chain_for(tenant_a)
    checkpoint_sign(chain=chain)
    fill(tenant_a, 2)
    checkpoint_sign(chain=chain)  # of 13, recorded by 14
    fill(tenant_a, 2)
    return chain


def _objects(client, chain) -> list[dict]:
    listed = client.list_object_versions(Bucket=BUCKET, Prefix=f"anchors/{chain.key}/")
    return sorted(listed.get("Versions", []), key=lambda v: v["Key"])


def test_each_checkpoint_is_an_object_locked_in_compliance_mode(chain, s3_anchors):
    objects = _objects(s3_anchors, chain)
    assert [Path(o["Key"]).name.split("-")[0] for o in objects] == [f"{10:020d}", f"{13:020d}"]
    head = s3_anchors.head_object(Bucket=BUCKET, Key=objects[0]["Key"], VersionId=objects[0]["VersionId"])
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] > datetime.now(tz=UTC) + timedelta(days=6 * 365)
    with pytest.raises(ClientError, match="AccessDenied"):
        s3_anchors.delete_object(Bucket=BUCKET, Key=objects[0]["Key"], VersionId=objects[0]["VersionId"])
    result = chain_verify(chain=chain)
    assert result.ok, result.summary()
    assert f"s3://{BUCKET}/anchors/" in result.summary() and "(event 13)" in result.summary()


def test_a_rewrite_with_the_rows_deleted_and_a_cut_are_caught_against_s3(chain, tamper):
    with tamper() as sql:
        rewrite_chain_from(sql, chain, 3)
        delete_checkpoints_from(sql, chain, 3)
    result = chain_verify(chain=chain)
    assert not result.ok and result.first_bad_sequence == 10
    assert any(p.kind == "checkpoint_mismatch" and p.sequence == 13 for p in result.problems)
    assert any(f"s3://{BUCKET}" in p.message for p in result.problems)


def test_a_cut_back_past_the_latest_anchor_is_caught_against_s3(chain, tamper):
    with tamper() as sql:
        delete_checkpoints_from(sql, chain, 11)
        cut_chain_at(sql, chain, 12)
    result = chain_verify(chain=chain)
    assert not result.ok and result.first_bad_sequence == 12
    assert "anchored outside the database covers event 13" in result.summary()


def test_an_overwritten_anchor_is_tampering_and_the_first_version_is_believed(chain, s3_anchors, tamper):
    latest = _objects(s3_anchors, chain)[-1]
    body = s3_anchors.get_object(Bucket=BUCKET, Key=latest["Key"])["Body"].read()
    # Someone with the application's S3 rights "corrects" the anchor to match a forged chain.
    s3_anchors.put_object(Bucket=BUCKET, Key=latest["Key"], Body=body.replace(b'"hash":"', b'"hash":"Z', 1))
    result = chain_verify(chain=chain)
    assert [p.kind for p in result.problems] == ["anchor_store"]
    assert "the anchor of event 13 was overwritten" in result.summary()


def test_the_offline_verifier_takes_the_anchor_objects_copied_from_the_bucket(
    chain, s3_anchors, tamper, tmp_path, anchor_key_file
):
    copied = tmp_path / "anchors"
    copied.mkdir()
    for item in _objects(s3_anchors, chain):
        data = s3_anchors.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
        (copied / Path(item["Key"]).name).write_bytes(data)
    intact = export_now(chain.tenant)
    code, output = run_verifier(tmp_path, intact, "--public-key", anchor_key_file, "--anchors", str(copied))
    assert code == 0, output
    with tamper() as sql:
        delete_checkpoints_from(sql, chain, 11)
        cut_chain_at(sql, chain, 12)
    code, output = run_verifier(
        tmp_path, export_now(chain.tenant), "--public-key", anchor_key_file, "--anchors", str(copied)
    )
    assert code == 1 and "anchored outside the database covers event 13 but the chain ends at 11" in output
