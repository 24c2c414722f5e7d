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
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

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


def set_provider(name: str, provider: KeyProvider | None) -> None:
    """Install (or with None, forget) the provider for `name`. For tests and settings changes."""
    if provider is None:
        _providers.pop(name, None)
    else:
        _providers[name] = provider


def reset_providers() -> None:
    _providers.clear()
