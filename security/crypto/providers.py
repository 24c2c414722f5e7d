"""Key providers: where data keys are generated, wrapped and unwrapped.

One interface, two implementations:

- LocalKeyProvider: a 256-bit master key from SETTLE_MASTER_KEY (or the file
  named by SETTLE_MASTER_KEY_FILE). Data keys are wrapped with AES-256-GCM
  under the master key, the encryption context as associated data. The
  embedded default; in development and test a master key is generated once
  into a file under VAR_DIR, which production refuses (portal.settings).
- AwsKmsProvider: AWS KMS through boto3, GenerateDataKey / Decrypt / Encrypt
  with an EncryptionContext naming the tenant, purpose and version, so a
  wrapped key moved to another tenant or purpose will not unwrap (and
  CloudTrail shows whose key was used).

Both also sign (audit checkpoints and export seals) with an asymmetric key
whose public half lets anyone verify offline:

- local: an Ed25519 key derived with HKDF from the master key under a fixed,
  named purpose (SIGNING_PURPOSE). No new secret: production already refuses
  to start without a real master key, and a previous master key still yields
  the public key that verifies what it signed.
- aws-kms: an asymmetric KMS key (ECC_NIST_P256, ECDSA_SHA_256) named by
  SETTLE_KMS_AUDIT_SIGNING_KEY_ID; the private half never leaves KMS.

A signing key id names the key *and carries its public key*
("<name>:<base64url public key>"), so a checkpoint or export signed years ago
names the exact key that verifies it, across key changes. Trust does not come
from the key id: verifiers accept only keys they already hold (the provider's
own keys in place, a pinned public key offline; see audit.signing).

Providers never log, persist or return key material anywhere but to their
caller (security.crypto.keyring), which holds it in memory only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from security.crypto.errors import KeyUnwrapError, KmsUnavailableError, MasterKeyMissingError

DATA_KEY_BYTES = 32  # AES-256
# First line of a master key file this program generated itself; production
# refuses such a file (a key it generated cannot have been provisioned safely).
GENERATED_MARKER = "# settle: generated development master key; never use in production"
GENERATED_FILE_NAME = "settle-master.key"


@dataclass(frozen=True, repr=False)
class GeneratedKey:
    plaintext: bytes
    wrapped: bytes
    key_id: str  # which master/KMS key wrapped it

    def __repr__(self) -> str:  # never show the plaintext
        return f"GeneratedKey(key_id={self.key_id!r}, plaintext=<redacted>)"


class KeyProvider(Protocol):
    name: str

    def current_key_id(self) -> str: ...

    def generate_data_key(self, *, context: Mapping[str, str]) -> GeneratedKey: ...

    def wrap(self, *, plaintext: bytes, context: Mapping[str, str]) -> tuple[bytes, str]: ...

    def unwrap(self, *, wrapped: bytes, key_id: str, context: Mapping[str, str]) -> bytes: ...


@dataclass(frozen=True)
class ProviderSignature:
    """A signature made by a provider's signing key, with what a verifier needs to check it."""

    signature: bytes
    key_id: str  # "<name>:<base64url public key>" (see signing_key_id)
    algorithm: str  # "Ed25519" or "ECDSA_SHA_256" (P-256)


class SigningProvider(Protocol):
    """The signing half of a key provider (both providers implement it)."""

    name: str

    def signing_key_id(self) -> str:
        """The key id of the key that signs now."""
        ...

    def signing_algorithm(self) -> str: ...

    def sign(self, *, message: bytes) -> ProviderSignature: ...

    def signing_key_ids(self) -> list[str]:
        """Every signing key id this provider vouches for: the current one first, then previous ones."""
        ...


ED25519 = "Ed25519"
ECDSA_P256_SHA256 = "ECDSA_SHA_256"
# HKDF "info" for the local signing key: a fixed, named purpose, so the key is
# unrelated to the data-key wrapping (which uses the master key with AES-GCM).
SIGNING_PURPOSE = b"settle:audit-signing:ed25519:v1"
# KMS signs RAW messages up to this size; longer ones are sent as their SHA-256 digest.
KMS_RAW_MESSAGE_LIMIT = 4096


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def signing_key_id(name: str, public_key: bytes) -> str:
    """The self-describing key id of a signing key: its name and its (compressed/raw) public key."""
    return f"{name}:{b64url(public_key)}"


def canonical_context(context: Mapping[str, str]) -> bytes:
    """The encryption context as bytes that do not depend on dict order."""
    return json.dumps(dict(context), sort_keys=True, separators=(",", ":")).encode()


# --- Local provider -------------------------------------------------------------------


def parse_master_key(text: str, *, source: str) -> bytes:
    """A master key from its text form: base64 (standard or url-safe) or hex of 32 bytes.

    Lines starting with '#' are ignored, so a generated file can carry its marker.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    value = "".join(lines)
    if not value:
        raise MasterKeyMissingError(f"{source} is empty; it must hold a base64-encoded 32-byte key")
    decoded: bytes | None = None
    if len(value) == 64:
        try:
            decoded = bytes.fromhex(value)
        except ValueError:
            decoded = None
    if decoded is None:
        try:
            decoded = base64.b64decode(
                value.replace("-", "+").replace("_", "/") + "=" * (-len(value) % 4), validate=True
            )
        except (binascii.Error, ValueError):
            raise MasterKeyMissingError(f"{source} is not base64 or hex") from None
    if len(decoded) != DATA_KEY_BYTES:
        raise MasterKeyMissingError(f"{source} must decode to {DATA_KEY_BYTES} bytes, not {len(decoded)}")
    return decoded


def is_generated_key_text(text: str) -> bool:
    return text.lstrip().startswith(GENERATED_MARKER)


def ensure_generated_master_key_file(var_dir: Path) -> Path:
    """Create VAR_DIR/settle-master.key once (mode 0600); development and test only.

    Safe against two processes starting at once: the file is created with
    O_EXCL, and the loser reads the winner's key.
    """
    path = var_dir / GENERATED_FILE_NAME
    if path.exists():
        return path
    var_dir.mkdir(parents=True, exist_ok=True)
    key = base64.b64encode(secrets.token_bytes(DATA_KEY_BYTES)).decode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{GENERATED_MARKER}\n{key}\n")
    return path


def _fingerprint(master_key: bytes) -> str:
    # A key id that names the master key without revealing anything about it.
    return hmac.new(master_key, b"settle-master-key-id", hashlib.sha256).hexdigest()[:16]


_LOCAL_FORMAT = b"L1"
_NONCE_BYTES = 12


@dataclass(repr=False)
class LocalKeyProvider:
    """Wraps data keys with AES-256-GCM under a master key held by this process.

    `master_keys[0]` wraps new keys; the others (previous master keys) only
    unwrap, so a master-key change is a rewrap of every data key
    (security.crypto.rotation.data_keys_rewrap), not a re-encryption of rows.
    """

    master_keys: list[bytes]
    name: str = "local"
    _by_id: dict[str, bytes] = field(init=False)
    _signing_keys: dict[bytes, ed25519.Ed25519PrivateKey] = field(init=False, default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.master_keys:
            raise MasterKeyMissingError("the local key provider has no master key (set SETTLE_MASTER_KEY)")
        self._by_id = {f"local:{_fingerprint(k)}": k for k in self.master_keys}

    def __repr__(self) -> str:
        return f"LocalKeyProvider(current={self.current_key_id()!r}, keys={len(self.master_keys)})"

    def current_key_id(self) -> str:
        return f"local:{_fingerprint(self.master_keys[0])}"

    def generate_data_key(self, *, context: Mapping[str, str]) -> GeneratedKey:
        plaintext = secrets.token_bytes(DATA_KEY_BYTES)
        wrapped, key_id = self.wrap(plaintext=plaintext, context=context)
        return GeneratedKey(plaintext=plaintext, wrapped=wrapped, key_id=key_id)

    def wrap(self, *, plaintext: bytes, context: Mapping[str, str]) -> tuple[bytes, str]:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = AESGCM(self.master_keys[0]).encrypt(nonce, plaintext, canonical_context(context))
        return _LOCAL_FORMAT + nonce + sealed, self.current_key_id()

    def _signing_key(self, master_key: bytes) -> ed25519.Ed25519PrivateKey:
        # Derived once per master key and held like the master key itself (memory only).
        key = self._signing_keys.get(master_key)
        if key is None:
            seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=SIGNING_PURPOSE).derive(master_key)
            key = self._signing_keys[master_key] = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        return key

    def _signing_key_id_of(self, master_key: bytes) -> str:
        public = (
            self._signing_key(master_key)
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        return signing_key_id("local-ed25519", public)

    def signing_key_id(self) -> str:
        return self._signing_key_id_of(self.master_keys[0])

    def signing_algorithm(self) -> str:
        return ED25519

    def signing_key_ids(self) -> list[str]:
        # Previous master keys still vouch for what they signed before a master-key change.
        return [self._signing_key_id_of(key) for key in self.master_keys]

    def sign(self, *, message: bytes) -> ProviderSignature:
        signature = self._signing_key(self.master_keys[0]).sign(message)
        return ProviderSignature(signature=signature, key_id=self.signing_key_id(), algorithm=ED25519)

    def unwrap(self, *, wrapped: bytes, key_id: str, context: Mapping[str, str]) -> bytes:
        master = self._by_id.get(key_id)
        if master is None:
            raise KeyUnwrapError(
                f"data key was wrapped by master key {key_id}, which this process does not have "
                f"(current: {self.current_key_id()}); set SETTLE_MASTER_KEY_PREVIOUS or rewrap"
            )
        if not wrapped.startswith(_LOCAL_FORMAT) or len(wrapped) < len(_LOCAL_FORMAT) + _NONCE_BYTES + 16:
            raise KeyUnwrapError(f"wrapped data key ({key_id}) is not in the local provider's format")
        nonce = wrapped[len(_LOCAL_FORMAT) : len(_LOCAL_FORMAT) + _NONCE_BYTES]
        try:
            return AESGCM(master).decrypt(
                nonce, wrapped[len(_LOCAL_FORMAT) + _NONCE_BYTES :], canonical_context(context)
            )
        except InvalidTag:
            raise KeyUnwrapError(
                f"wrapped data key ({key_id}) failed authentication: altered, or moved to another tenant/purpose"
            ) from None


# --- AWS KMS provider ----------------------------------------------------------------------


_UNAVAILABLE_CODES = {
    "DisabledException",
    "KMSInvalidStateException",
    "NotFoundException",
    "AccessDeniedException",
    "KeyUnavailableException",
    "DependencyTimeoutException",
    "KMSInternalException",
    "ThrottlingException",
    "UnrecognizedClientException",
}


@dataclass(repr=False)
class AwsKmsProvider:
    """Data keys generated and wrapped by AWS KMS (a symmetric KMS key)."""

    key_id: str
    region: str | None = None
    endpoint_url: str | None = None
    client: Any = None
    name: str = "aws-kms"
    # Asymmetric KMS key (ECC_NIST_P256) that signs audit checkpoints; earlier ones only vouch.
    signing_kms_key_id: str = ""
    previous_signing_kms_key_ids: list[str] = field(default_factory=list)
    _public_keys: dict[str, bytes] = field(init=False, default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.key_id:
            raise KmsUnavailableError("the AWS KMS provider needs a key id (set SETTLE_KMS_KEY_ID)")
        if self.client is None:
            import boto3
            from botocore.config import Config

            self.client = boto3.client(
                "kms",
                region_name=self.region,
                endpoint_url=self.endpoint_url or None,
                # Fail fast: a request waiting on KMS holds a web worker.
                config=Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"}),
            )

    def __repr__(self) -> str:
        return f"AwsKmsProvider(key_id={self.key_id!r}, region={self.region!r})"

    def current_key_id(self) -> str:
        return self.key_id

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response: dict[str, Any] = getattr(self.client, operation)(**kwargs)
            return response
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("InvalidCiphertextException", "IncorrectKeyException"):
                raise KeyUnwrapError(
                    f"KMS refused to unwrap the data key ({code}): wrong key, wrong encryption context or altered"
                ) from None
            if code in _UNAVAILABLE_CODES:
                raise KmsUnavailableError(f"KMS {operation} refused: {code}") from None
            raise KmsUnavailableError(f"KMS {operation} failed: {code or 'unknown error'}") from None
        except BotoCoreError as exc:
            # Connection refused, DNS, timeouts, missing credentials.
            raise KmsUnavailableError(f"KMS could not be reached for {operation}: {type(exc).__name__}") from None

    def generate_data_key(self, *, context: Mapping[str, str]) -> GeneratedKey:
        response = self._call(
            "generate_data_key", KeyId=self.key_id, KeySpec="AES_256", EncryptionContext=dict(context)
        )
        return GeneratedKey(
            plaintext=bytes(response["Plaintext"]),
            wrapped=bytes(response["CiphertextBlob"]),
            key_id=str(response.get("KeyId") or self.key_id),
        )

    def wrap(self, *, plaintext: bytes, context: Mapping[str, str]) -> tuple[bytes, str]:
        response = self._call("encrypt", KeyId=self.key_id, Plaintext=plaintext, EncryptionContext=dict(context))
        return bytes(response["CiphertextBlob"]), str(response.get("KeyId") or self.key_id)

    def _compressed_public_key(self, kms_key_id: str) -> bytes:
        """The KMS key's P-256 public key as a compressed point, fetched once per process."""
        cached = self._public_keys.get(kms_key_id)
        if cached is not None:
            return cached
        from cryptography.hazmat.primitives.asymmetric import ec

        response = self._call("get_public_key", KeyId=kms_key_id)
        if response.get("KeySpec", response.get("CustomerMasterKeySpec")) != "ECC_NIST_P256":
            raise KmsUnavailableError(f"the KMS signing key {kms_key_id} must be an ECC_NIST_P256 key")
        public = serialization.load_der_public_key(bytes(response["PublicKey"]))
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise KmsUnavailableError(f"the KMS signing key {kms_key_id} is not an elliptic-curve key")
        compressed = public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
        self._public_keys[kms_key_id] = compressed
        return compressed

    def _signing_kms_key(self) -> str:
        if not self.signing_kms_key_id:
            raise KmsUnavailableError(
                "the AWS KMS provider signs audit checkpoints with an asymmetric key: "
                "set SETTLE_KMS_AUDIT_SIGNING_KEY_ID (an ECC_NIST_P256 key)"
            )
        return self.signing_kms_key_id

    def _signing_key_id_of(self, kms_key_id: str) -> str:
        return signing_key_id(f"aws-kms:{kms_key_id}", self._compressed_public_key(kms_key_id))

    def signing_key_id(self) -> str:
        return self._signing_key_id_of(self._signing_kms_key())

    def signing_algorithm(self) -> str:
        return ECDSA_P256_SHA256

    def signing_key_ids(self) -> list[str]:
        return [self._signing_key_id_of(k) for k in [self._signing_kms_key(), *self.previous_signing_kms_key_ids]]

    def sign(self, *, message: bytes) -> ProviderSignature:
        kms_key_id = self._signing_kms_key()
        # First: fetch (once) and check the public key, so a wrong key type is named plainly.
        key_id = self._signing_key_id_of(kms_key_id)
        if len(message) <= KMS_RAW_MESSAGE_LIMIT:
            payload, message_type = message, "RAW"
        else:
            # Same signature as over the message itself (ECDSA over its SHA-256), for any length.
            digest = hashes.Hash(hashes.SHA256())
            digest.update(message)
            payload, message_type = digest.finalize(), "DIGEST"
        response = self._call(
            "sign", KeyId=kms_key_id, Message=payload, MessageType=message_type, SigningAlgorithm=ECDSA_P256_SHA256
        )
        return ProviderSignature(signature=bytes(response["Signature"]), key_id=key_id, algorithm=ECDSA_P256_SHA256)

    def unwrap(self, *, wrapped: bytes, key_id: str, context: Mapping[str, str]) -> bytes:
        # KeyId is passed so KMS refuses a blob wrapped by any other key.
        response = self._call("decrypt", CiphertextBlob=wrapped, KeyId=key_id, EncryptionContext=dict(context))
        plaintext = bytes(response["Plaintext"])
        if len(plaintext) != DATA_KEY_BYTES:
            raise KeyUnwrapError(f"KMS returned a {len(plaintext)}-byte data key; expected {DATA_KEY_BYTES}")
        return plaintext


# --- Which provider this process uses ------------------------------------------------------


def local_provider_from_settings() -> LocalKeyProvider:
    from django.conf import settings

    keys: list[bytes] = []
    current = getattr(settings, "SETTLE_MASTER_KEY", None)
    if current:
        keys.append(parse_master_key(current, source="SETTLE_MASTER_KEY"))
    elif getattr(settings, "PRODUCTION", False):
        # portal.settings already refuses this at start-up; this is the second wall.
        raise MasterKeyMissingError("SETTLE_MASTER_KEY (or SETTLE_MASTER_KEY_FILE) must be set in production")
    else:
        path = ensure_generated_master_key_file(Path(settings.VAR_DIR))
        keys.append(parse_master_key(path.read_text(), source=str(path)))
    for index, previous in enumerate(getattr(settings, "SETTLE_MASTER_KEY_PREVIOUS", []) or []):
        keys.append(parse_master_key(previous, source=f"SETTLE_MASTER_KEY_PREVIOUS[{index}]"))
    return LocalKeyProvider(master_keys=keys)


def aws_provider_from_settings() -> AwsKmsProvider:
    from django.conf import settings

    return AwsKmsProvider(
        key_id=getattr(settings, "SETTLE_KMS_KEY_ID", "") or "",
        region=getattr(settings, "SETTLE_KMS_REGION", None),
        endpoint_url=getattr(settings, "SETTLE_KMS_ENDPOINT_URL", None),
        signing_kms_key_id=getattr(settings, "SETTLE_KMS_AUDIT_SIGNING_KEY_ID", "") or "",
        previous_signing_kms_key_ids=list(getattr(settings, "SETTLE_KMS_AUDIT_SIGNING_KEY_PREVIOUS", []) or []),
    )


_providers: dict[str, KeyProvider] = {}


def get_provider(name: str | None = None) -> KeyProvider:
    """The provider named `name` (default: settings.SETTLE_KEY_PROVIDER), built once per process."""
    from django.conf import settings

    name = str(name or getattr(settings, "SETTLE_KEY_PROVIDER", "local"))
    provider = _providers.get(name)
    if provider is None:
        if name == "local":
            provider = local_provider_from_settings()
        elif name == "aws-kms":
            provider = aws_provider_from_settings()
        else:
            raise KmsUnavailableError(f"unknown key provider {name!r} (use local or aws-kms)")
        _providers[name] = provider
    return provider


def get_signing_provider(name: str | None = None) -> SigningProvider:
    """The provider named `name` (default: the configured one), as a signer."""
    provider = get_provider(name)
    if not callable(getattr(provider, "sign", None)) or not callable(getattr(provider, "signing_key_ids", None)):
        raise KmsUnavailableError(f"key provider {provider.name!r} cannot sign")
    return cast(SigningProvider, provider)


def set_provider(name: str, provider: KeyProvider | None) -> None:
    """Install (or with None, forget) the provider for `name`. For tests and settings changes."""
    if provider is None:
        _providers.pop(name, None)
    else:
        _providers[name] = provider


def reset_providers() -> None:
    _providers.clear()
