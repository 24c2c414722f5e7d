"""Key providers: the local master key and AWS KMS (against moto's server on loopback)."""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.test import override_settings

from portal.models import Tenant
from portal.tenancy.context import tenant_scope
from security.crypto import keyring
from security.crypto.errors import (
    KeyUnavailableError,
    KeyUnwrapError,
    KmsUnavailableError,
    MasterKeyMissingError,
)
from security.crypto.keyring import encryption_context
from security.crypto.models import DataKey
from security.crypto.providers import (
    GENERATED_MARKER,
    AwsKmsProvider,
    LocalKeyProvider,
    ensure_generated_master_key_file,
    local_provider_from_settings,
    parse_master_key,
    reset_providers,
    set_provider,
)
from tests.security import crypto_support
from tests.security.crypto_support import Vault, new_master_key
from tests.settings_probe import load_settings, production_environment

# Fixtures shared by the crypto tests (requested by name: local_keys, two_tenants, vault_table).
local_keys_fixture = crypto_support.local_keys_fixture
two_tenants_fixture = crypto_support.two_tenants_fixture
vault_table_fixture = crypto_support.vault_table_fixture

ROOT = Path(__file__).resolve().parents[2]
CONTEXT = {"settle:tenant": "7", "settle:purpose": "phi", "settle:version": "1"}


# --- Local provider --------------------------------------------------------------------


def test_local_round_trip_and_context_binding() -> None:
    provider = LocalKeyProvider(master_keys=[new_master_key()])
    generated = provider.generate_data_key(context=CONTEXT)
    assert len(generated.plaintext) == 32 and generated.plaintext not in generated.wrapped
    assert "redacted" in repr(generated) and generated.plaintext.hex() not in repr(generated)
    assert provider.unwrap(wrapped=generated.wrapped, key_id=generated.key_id, context=CONTEXT) == generated.plaintext
    for other in (
        {**CONTEXT, "settle:tenant": "8"},
        {**CONTEXT, "settle:purpose": "secret"},
        {**CONTEXT, "settle:version": "2"},
    ):
        with pytest.raises(KeyUnwrapError, match="failed authentication"):
            provider.unwrap(wrapped=generated.wrapped, key_id=generated.key_id, context=other)


def test_local_wrong_master_key_names_the_problem() -> None:
    wrapped = LocalKeyProvider(master_keys=[new_master_key()]).generate_data_key(context=CONTEXT)
    stranger = LocalKeyProvider(master_keys=[new_master_key()])
    with pytest.raises(KeyUnwrapError, match="does not have"):
        stranger.unwrap(wrapped=wrapped.wrapped, key_id=wrapped.key_id, context=CONTEXT)


def test_local_previous_master_key_still_unwraps() -> None:
    old, new = new_master_key(), new_master_key()
    wrapped = LocalKeyProvider(master_keys=[old]).generate_data_key(context=CONTEXT)
    both = LocalKeyProvider(master_keys=[new, old])
    assert both.unwrap(wrapped=wrapped.wrapped, key_id=wrapped.key_id, context=CONTEXT) == wrapped.plaintext
    assert both.current_key_id() != wrapped.key_id


def test_local_tampered_wrapped_key_is_refused() -> None:
    provider = LocalKeyProvider(master_keys=[new_master_key()])
    generated = provider.generate_data_key(context=CONTEXT)
    tampered = bytearray(generated.wrapped)
    tampered[-1] ^= 1
    with pytest.raises(KeyUnwrapError):
        provider.unwrap(wrapped=bytes(tampered), key_id=generated.key_id, context=CONTEXT)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("not base64!!", "not base64"), (base64.b64encode(b"short").decode(), "32 bytes")],
)
def test_unusable_master_keys_are_refused(text: str, message: str) -> None:
    with pytest.raises(MasterKeyMissingError, match=message):
        parse_master_key(text, source="SETTLE_MASTER_KEY")


def test_master_key_accepts_base64_urlsafe_and_hex() -> None:
    key = new_master_key()
    assert parse_master_key(base64.b64encode(key).decode(), source="x") == key
    assert parse_master_key(base64.urlsafe_b64encode(key).decode().rstrip("="), source="x") == key
    assert parse_master_key(key.hex(), source="x") == key


def test_no_master_key_means_no_provider() -> None:
    with pytest.raises(MasterKeyMissingError):
        LocalKeyProvider(master_keys=[])


def test_development_generates_a_key_file_once(tmp_path: Path) -> None:
    path = ensure_generated_master_key_file(tmp_path)
    text = path.read_text()
    assert text.startswith(GENERATED_MARKER)
    assert path.stat().st_mode & 0o777 == 0o600
    assert ensure_generated_master_key_file(tmp_path).read_text() == text
    with override_settings(SETTLE_MASTER_KEY=None, VAR_DIR=tmp_path, PRODUCTION=False, SETTLE_MASTER_KEY_PREVIOUS=[]):
        provider = local_provider_from_settings()
    assert provider.master_keys == [parse_master_key(text, source="file")]


def test_production_provider_never_generates(tmp_path: Path) -> None:
    with (
        override_settings(SETTLE_MASTER_KEY=None, VAR_DIR=tmp_path, PRODUCTION=True),
        pytest.raises(MasterKeyMissingError),
    ):
        local_provider_from_settings()
    assert not list(tmp_path.iterdir())


def _production_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **extra: str) -> dict[str, Any]:
    """Production settings with no master key unless `extra` gives one."""
    env = {k: v for k, v in production_environment(tmp_path).items() if k != "SETTLE_MASTER_KEY"}
    return load_settings(monkeypatch, {**env, **extra})


def test_production_refuses_to_start_without_a_master_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="SETTLE_MASTER_KEY"):
        _production_settings(monkeypatch, tmp_path)


def test_production_refuses_a_key_file_settle_generated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    generated = ensure_generated_master_key_file(tmp_path / "dev")
    with pytest.raises(ImproperlyConfigured, match="generated"):
        _production_settings(monkeypatch, tmp_path, SETTLE_MASTER_KEY_FILE=str(generated))


def test_production_accepts_a_provisioned_key_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key_file = tmp_path / "master.key"
    key_file.write_text(base64.b64encode(new_master_key()).decode() + "\n")
    loaded = _production_settings(monkeypatch, tmp_path, SETTLE_MASTER_KEY_FILE=str(key_file))
    assert loaded["SETTLE_MASTER_KEY"]
    with pytest.raises(ImproperlyConfigured, match="SETTLE_KMS_KEY_ID"):
        _production_settings(monkeypatch, tmp_path, SETTLE_KEY_PROVIDER="aws-kms")


@pytest.mark.usefixtures("vault_table")
def test_missing_master_key_means_no_write_and_no_plaintext(two_tenants: tuple[Tenant, Tenant], tmp_path: Path) -> None:
    alpha, _ = two_tenants
    reset_providers()
    keyring.forget_all()
    try:
        with override_settings(SETTLE_MASTER_KEY=None, PRODUCTION=True, VAR_DIR=tmp_path), tenant_scope(alpha):
            with pytest.raises(MasterKeyMissingError), transaction.atomic():
                Vault(tenant=alpha, name="Never Stored").save()
            assert not Vault.objects.exists()
            assert not DataKey.objects.exists()
    finally:
        reset_providers()


@pytest.mark.usefixtures("local_keys", "vault_table")
def test_rows_need_the_master_key_that_wrapped_their_data_key(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    with tenant_scope(alpha):
        row = Vault(tenant=alpha, name="Rosa")
        row.save()
    # Another process, another master key: a clear error, not garbage.
    set_provider("local", LocalKeyProvider(master_keys=[new_master_key()]))
    keyring.forget_all()
    with tenant_scope(alpha):
        loaded = Vault.objects.get(pk=row.pk)
        with pytest.raises(KeyUnwrapError):
            _ = loaded.name


# --- AWS KMS against moto ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def moto_kms() -> Iterator[str]:
    """moto's server on loopback; yields its URL."""
    port = _free_port()
    binary = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("moto_server did not start")
            time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)


def _kms_key(endpoint: str) -> str:
    import boto3

    client = boto3.client("kms", region_name="us-east-1", endpoint_url=endpoint)
    return str(client.create_key(Description="settle test")["KeyMetadata"]["Arn"])


@pytest.mark.usefixtures("aws_env")
def test_aws_round_trip_and_wrong_context_is_refused(moto_kms: str) -> None:
    provider = AwsKmsProvider(key_id=_kms_key(moto_kms), region="us-east-1", endpoint_url=moto_kms)
    generated = provider.generate_data_key(context=CONTEXT)
    assert len(generated.plaintext) == 32
    assert provider.unwrap(wrapped=generated.wrapped, key_id=generated.key_id, context=CONTEXT) == generated.plaintext
    with pytest.raises(KeyUnwrapError, match="encryption context"):
        provider.unwrap(wrapped=generated.wrapped, key_id=generated.key_id, context={**CONTEXT, "settle:tenant": "8"})
    with pytest.raises(KeyUnwrapError):
        provider.unwrap(wrapped=generated.wrapped, key_id=generated.key_id, context={})
    # Wrapping an existing key (rewrap) also binds the context.
    wrapped, key_id = provider.wrap(plaintext=generated.plaintext, context=CONTEXT)
    assert provider.unwrap(wrapped=wrapped, key_id=key_id, context=CONTEXT) == generated.plaintext


@pytest.mark.usefixtures("aws_env")
def test_aws_blob_of_another_kms_key_is_refused(moto_kms: str) -> None:
    first = AwsKmsProvider(key_id=_kms_key(moto_kms), region="us-east-1", endpoint_url=moto_kms)
    second_id = _kms_key(moto_kms)
    generated = first.generate_data_key(context=CONTEXT)
    with pytest.raises(KeyUnavailableError):
        first.unwrap(wrapped=generated.wrapped, key_id=second_id, context=CONTEXT)


@pytest.mark.usefixtures("aws_env")
def test_aws_unreachable_kms_is_a_clear_error() -> None:
    provider = AwsKmsProvider(
        key_id="alias/settle", region="us-east-1", endpoint_url=f"http://127.0.0.1:{_free_port()}"
    )
    with pytest.raises(KmsUnavailableError, match="could not be reached"):
        provider.generate_data_key(context=CONTEXT)


@pytest.mark.usefixtures("aws_env", "vault_table")
def test_fields_encrypt_through_aws_kms(moto_kms: str, two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    key_arn = _kms_key(moto_kms)
    keyring.forget_all()
    set_provider("aws-kms", AwsKmsProvider(key_id=key_arn, region="us-east-1", endpoint_url=moto_kms))
    try:
        with override_settings(SETTLE_KEY_PROVIDER="aws-kms"), tenant_scope(alpha):
            row = Vault(tenant=alpha, name="Through KMS")
            row.save()
            key = DataKey.objects.get(purpose="phi")
            assert key.provider == "aws-kms" and key.wrapping_key_id == key_arn
            keyring.forget_all()
            assert Vault.objects.get(pk=row.pk).name == "Through KMS"
            # The stored wrapped key is bound to its tenant, purpose and version.
            assert encryption_context(tenant_id=alpha.pk, purpose="phi", version=1)["settle:tenant"] == str(alpha.pk)
    finally:
        set_provider("aws-kms", None)
        keyring.forget_all()


# --- Signing (audit checkpoints and export seals) -----------------------------------------


def _verifies(key_id: str, algorithm: str, message: bytes, signature: bytes) -> bool:
    from audit.signing import public_key_from_key_id

    return public_key_from_key_id(key_id, algorithm).verify(message, signature)


def test_local_signing_key_is_derived_from_the_master_key_and_verifies_offline() -> None:
    master = new_master_key()
    provider = LocalKeyProvider(master_keys=[master])
    made = provider.sign(message=b"chain head")
    assert made.algorithm == "Ed25519" and made.key_id == provider.signing_key_id()
    assert made.key_id.startswith("local-ed25519:")
    assert _verifies(made.key_id, made.algorithm, b"chain head", made.signature)
    assert not _verifies(made.key_id, made.algorithm, b"chain head!", made.signature)
    # Same master key, same signing key (another process); another master key, another signing key.
    assert LocalKeyProvider(master_keys=[master]).signing_key_id() == made.key_id
    assert LocalKeyProvider(master_keys=[new_master_key()]).signing_key_id() != made.key_id
    # The signing key is not the wrapping key's id, and the id reveals nothing of the master key.
    assert made.key_id != provider.current_key_id() and base64.b64encode(master).decode() not in made.key_id


def test_local_previous_master_keys_still_vouch_for_their_signatures() -> None:
    old, new = new_master_key(), new_master_key()
    signed_before = LocalKeyProvider(master_keys=[old]).sign(message=b"m")
    after_change = LocalKeyProvider(master_keys=[new, old])
    assert after_change.signing_key_ids() == [after_change.signing_key_id(), signed_before.key_id]
    assert after_change.sign(message=b"m").key_id != signed_before.key_id


def _kms_signing_key(endpoint: str, spec: str = "ECC_NIST_P256") -> str:
    import boto3

    client = boto3.client("kms", region_name="us-east-1", endpoint_url=endpoint)
    metadata = client.create_key(Description="settle audit signing", KeyUsage="SIGN_VERIFY", KeySpec=spec)
    return str(metadata["KeyMetadata"]["Arn"])


@pytest.mark.usefixtures("aws_env")
def test_aws_signs_with_an_asymmetric_kms_key_that_verifies_offline_and_in_kms(moto_kms: str) -> None:
    signing_arn = _kms_signing_key(moto_kms)
    provider = AwsKmsProvider(
        key_id=_kms_key(moto_kms), region="us-east-1", endpoint_url=moto_kms, signing_kms_key_id=signing_arn
    )
    made = provider.sign(message=b"chain head")
    assert made.algorithm == "ECDSA_SHA_256"
    assert made.key_id.startswith(f"aws-kms:{signing_arn}:") and len(made.key_id) <= 200
    assert _verifies(made.key_id, made.algorithm, b"chain head", made.signature)
    assert not _verifies(made.key_id, made.algorithm, b"chain tail", made.signature)
    kms = provider.client.verify(
        KeyId=signing_arn,
        Message=b"chain head",
        MessageType="RAW",
        Signature=made.signature,
        SigningAlgorithm="ECDSA_SHA_256",
    )
    assert kms["SignatureValid"] is True
    assert provider.signing_key_ids() == [made.key_id]


@pytest.mark.usefixtures("aws_env")
def test_aws_signing_needs_a_p256_key_and_says_so(moto_kms: str) -> None:
    unset = AwsKmsProvider(key_id=_kms_key(moto_kms), region="us-east-1", endpoint_url=moto_kms)
    with pytest.raises(KmsUnavailableError, match="SETTLE_KMS_AUDIT_SIGNING_KEY_ID"):
        unset.sign(message=b"m")
    rsa = AwsKmsProvider(
        key_id="unused",
        region="us-east-1",
        endpoint_url=moto_kms,
        signing_kms_key_id=_kms_signing_key(moto_kms, "RSA_2048"),
    )
    with pytest.raises(KmsUnavailableError, match="ECC_NIST_P256"):
        rsa.sign(message=b"m")


class _DigestSigningKms:
    """A stand-in for KMS Sign with MessageType=DIGEST, which moto does not implement.

    Real KMS signs the given SHA-256 digest as the digest of the message (so
    the signature verifies as ECDSA_SHA_256 over the message); moto hashes it
    again. This double does what KMS documents, with a local P-256 key.
    """

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        self.private = ec.generate_private_key(ec.SECP256R1())
        self.calls: list[dict[str, Any]] = []

    def get_public_key(self, KeyId: str) -> dict[str, Any]:  # noqa: N803 - boto3's argument names
        from cryptography.hazmat.primitives import serialization

        der = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {"KeySpec": "ECC_NIST_P256", "PublicKey": der}

    def sign(self, **kwargs: Any) -> dict[str, Any]:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, utils

        self.calls.append(kwargs)
        if kwargs["MessageType"] == "DIGEST":
            algorithm: Any = ec.ECDSA(utils.Prehashed(hashes.SHA256()))
        else:
            algorithm = ec.ECDSA(hashes.SHA256())
        return {"Signature": self.private.sign(kwargs["Message"], algorithm)}


def test_aws_signs_long_messages_as_a_digest_that_still_verifies_over_the_message() -> None:
    fake = _DigestSigningKms()
    provider = AwsKmsProvider(key_id="unused", client=fake, signing_kms_key_id="arn:aws:kms:us-east-1:1:key/x")
    long_message = b"m" * 5000  # a manifest of many archived months
    made = provider.sign(message=long_message)
    assert fake.calls[-1]["MessageType"] == "DIGEST" and len(fake.calls[-1]["Message"]) == 32
    assert _verifies(made.key_id, made.algorithm, long_message, made.signature)
    provider.sign(message=b"short")
    assert fake.calls[-1]["MessageType"] == "RAW"
