"""Export file keys come from the key provider, bound to the purpose and the file; old files still open."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings

from audit import conf
from audit.crypto import MAGIC, DecryptionError, EncryptingWriter, LocalKeyWrapper, decrypt_stream, provider_context
from audit.models import AuditExport
from audit.services.exports import _file_path, export_build, export_read_all
from portal.tenancy.context import tenant_scope
from security.crypto.providers import AwsKmsProvider, set_provider
from tests.audit.conftest import fill
from tests.security.crypto_support import local_keys_fixture
from tests.security.test_crypto_providers import _kms_key, aws_env, moto_kms

local_keys = local_keys_fixture
__all__ = ["aws_env", "moto_kms"]  # fixtures used by name below

CONTEXT = {"tenant": "t-1", "export": "e-1", "file": "jsonl"}
PLAIN = b'{"type":"event"}\n' * 9000  # several frames


def _encrypt(context: dict[str, str], wrapper=None) -> bytes:
    sink = io.BytesIO()
    writer = EncryptingWriter(sink, context=context, wrapper=wrapper)
    writer.write(PLAIN)
    writer.close()
    return sink.getvalue()


def _header(data: bytes) -> dict[str, str]:
    return json.loads(data[len(MAGIC) :].split(b"\n", 1)[0])


def _decrypt(data: bytes, context: dict[str, str], wrapper=None) -> bytes:
    return b"".join(decrypt_stream(io.BytesIO(data), context=context, wrapper=wrapper))


@pytest.mark.usefixtures("local_keys")
def test_a_file_key_comes_from_the_provider_and_is_bound_to_its_file():
    data = _encrypt(CONTEXT)
    header = _header(data)
    assert header["key_id"].startswith("kp:local|local:")
    assert _decrypt(data, CONTEXT) == PLAIN
    for other in ({**CONTEXT, "export": "e-2"}, {**CONTEXT, "file": "csv"}, {**CONTEXT, "tenant": "t-2"}):
        with pytest.raises(DecryptionError, match="does not unwrap"):
            _decrypt(data, other)


def test_the_provider_context_names_the_purpose():
    assert provider_context(CONTEXT) == {
        "settle:purpose": "audit-export",
        "settle:export": "e-1",
        "settle:file": "jsonl",
        "settle:tenant": "t-1",
    }


@pytest.mark.usefixtures("local_keys")
def test_a_file_written_with_the_legacy_export_key_still_opens():
    legacy = _encrypt(CONTEXT, wrapper=LocalKeyWrapper(conf.export_master_key()))
    assert _header(legacy)["key_id"] == "local-export-1"
    assert _decrypt(legacy, CONTEXT) == PLAIN


@pytest.mark.usefixtures("local_keys")
def test_a_legacy_file_without_its_key_configured_fails_plainly(settings):
    legacy = _encrypt(CONTEXT, wrapper=LocalKeyWrapper(conf.export_master_key()))
    settings.PRODUCTION = True
    settings.SETTLE_AUDIT_EXPORT_KEY = ""
    with pytest.raises(DecryptionError, match="SETTLE_AUDIT_EXPORT_KEY"):
        _decrypt(legacy, CONTEXT)


@pytest.mark.django_db
@pytest.mark.usefixtures("local_keys")
def test_an_export_built_through_the_provider_reads_back_and_not_as_another_export(tenant_a, settings, tmp_path):
    settings.SETTLE_AUDIT_EXPORT_DIR = str(tmp_path)
    fill(tenant_a, 5)
    now = datetime.now(tz=UTC)
    with tenant_scope(tenant_a):
        first, second = (
            export_build(
                export=AuditExport.objects.create(
                    tenant=tenant_a, date_from=now - timedelta(days=1), date_to=now + timedelta(days=1)
                )
            )
            for _ in range(2)
        )
        assert _header(_file_path(first, "jsonl").read_bytes())["key_id"].startswith("kp:local|")
        assert b'"type":"footer"' in export_read_all(export=first, kind="jsonl")
        # Swap one export's file in for another's: its key does not unwrap there.
        _file_path(second, "jsonl").write_bytes(_file_path(first, "jsonl").read_bytes())
        with pytest.raises(DecryptionError):
            export_read_all(export=second, kind="jsonl")


@pytest.mark.usefixtures("aws_env")
def test_file_keys_through_aws_kms(moto_kms):
    provider = AwsKmsProvider(key_id=_kms_key(moto_kms), region="us-east-1", endpoint_url=moto_kms)
    set_provider("aws-kms", provider)
    try:
        with override_settings(SETTLE_KEY_PROVIDER="aws-kms"):
            data = _encrypt(CONTEXT)
            assert _header(data)["key_id"].startswith("kp:aws-kms|arn:aws:kms:")
            assert _decrypt(data, CONTEXT) == PLAIN
            with pytest.raises(DecryptionError):
                _decrypt(data, {**CONTEXT, "export": "e-2"})
    finally:
        set_provider("aws-kms", None)
