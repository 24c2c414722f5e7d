"""Who signs checkpoints and export seals, and which signatures a verifier trusts.

A signer has a key id, an algorithm name and sign/verify over bytes. Two kinds:

- ProviderSigner (the default outside tests): the key provider's asymmetric
  signing key (security.crypto.providers: Ed25519 derived from the local
  master key, or an ECC_NIST_P256 key in AWS KMS). Its key id carries the
  public key ("<name>:<base64url public key>"), so anyone can check a
  signature offline; what makes a signature *trusted* is that the key is one
  the verifier already holds: the provider's own keys in place
  (`manage.py verify_audit`), a pinned public key offline
  (`python -m audit.verify --public-key FILE`).
- HmacSigner: the legacy HMAC key from settings (audit.conf.signing_key). New
  signatures use it only when SETTLE_AUDIT_SIGNER=hmac; old HMAC checkpoints
  stay verifiable wherever that key is still configured.

Signatures are stored with their key id and algorithm, so old checkpoints stay
verifiable after the key changes. A test double or another signer is plugged
in with `set_signer_factory`.

No Django import at module level, and `cryptography` only when a public-key
signature is checked: the offline verifier imports this module.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from security.crypto.providers import SigningProvider

HMAC_SHA256 = "HMAC-SHA256"
ED25519 = "Ed25519"
ECDSA_P256_SHA256 = "ECDSA_SHA_256"
PUBLIC_KEY_ALGORITHMS = (ED25519, ECDSA_P256_SHA256)


class SignatureVerifier(Protocol):
    def verify(self, message: bytes, signature: str, *, key_id: str, algorithm: str) -> bool:
        """True when `signature` over `message` was made with a key this verifier trusts."""
        ...


class Signer(SignatureVerifier, Protocol):
    key_id: str
    algorithm: str

    def sign(self, message: bytes) -> str:
        """The base64 signature of `message`."""
        ...


class HmacSigner:
    algorithm = HMAC_SHA256

    def __init__(self, key: bytes, key_id: str) -> None:
        if len(key) < 32:
            raise ValueError("an HMAC signing key needs at least 32 bytes")
        self._key = key
        self.key_id = key_id

    def sign(self, message: bytes) -> str:
        return base64.b64encode(hmac.new(self._key, message, hashlib.sha256).digest()).decode("ascii")

    def verify(self, message: bytes, signature: str, *, key_id: str, algorithm: str) -> bool:
        if algorithm != self.algorithm or key_id != self.key_id:
            return False
        return hmac.compare_digest(self.sign(message), signature)


# --- Public keys ---------------------------------------------------------------------------


class KeyFormatError(ValueError):
    """A key id or key file does not hold a public key of a known algorithm."""


@dataclass(frozen=True)
class PublicKey:
    """A signing public key: its algorithm and its SubjectPublicKeyInfo (DER)."""

    algorithm: str
    spki: bytes

    @property
    def fingerprint(self) -> str:
        """SHA256:<base64> of the DER public key, the form `ssh-keygen -l` uses."""
        return "SHA256:" + base64.b64encode(hashlib.sha256(self.spki).digest()).decode("ascii").rstrip("=")

    def pem(self) -> str:
        body = base64.encodebytes(self.spki).decode("ascii").replace("\n", "")
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        return "\n".join(["-----BEGIN PUBLIC KEY-----", *lines, "-----END PUBLIC KEY-----", ""])

    def verify(self, message: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519

        key = _loaded_key(self.spki)
        try:
            if self.algorithm == ED25519 and isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, message)
                return True
            if self.algorithm == ECDSA_P256_SHA256 and isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
                return True
        except InvalidSignature:
            return False
        return False


@functools.lru_cache(maxsize=64)
def _loaded_key(spki: bytes) -> Any:
    # An export may carry a checkpoint every few minutes for a year: parse each key once.
    from cryptography.hazmat.primitives import serialization

    return serialization.load_der_public_key(spki)


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@functools.lru_cache(maxsize=64)
def public_key_from_key_id(key_id: str, algorithm: str) -> PublicKey:
    """The public key a provider key id carries ("<name>:<base64url key>"); KeyFormatError otherwise."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    _, _, encoded = key_id.rpartition(":")
    try:
        raw = _b64url_decode(encoded)
        key: Any
        if algorithm == ED25519:
            key = ed25519.Ed25519PublicKey.from_public_bytes(raw)
        elif algorithm == ECDSA_P256_SHA256:
            key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
        else:
            raise KeyFormatError(f"algorithm {algorithm!r} has no public key")
    except (binascii.Error, ValueError) as exc:
        if isinstance(exc, KeyFormatError):
            raise
        raise KeyFormatError(f"key id {key_id!r} does not carry a valid {algorithm} public key") from None
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return PublicKey(algorithm=algorithm, spki=spki)


def public_key_from_pem(data: bytes) -> PublicKey:
    """A pinned key from a PEM (or DER) SubjectPublicKeyInfo file: Ed25519 or P-256."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    try:
        key = (
            serialization.load_pem_public_key(data)
            if data.lstrip().startswith(b"-----")
            else serialization.load_der_public_key(data)
        )
    except ValueError:
        raise KeyFormatError("not a PEM or DER public key") from None
    if isinstance(key, ed25519.Ed25519PublicKey):
        algorithm = ED25519
    elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        algorithm = ECDSA_P256_SHA256
    else:
        raise KeyFormatError("only Ed25519 and P-256 public keys sign audit trails")
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return PublicKey(algorithm=algorithm, spki=spki)


def _decoded_signature(signature: str) -> bytes | None:
    try:
        return base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return None


@dataclass
class TrustedKeys:
    """Verifies public-key signatures only by keys it was given (and HMAC ones by an HMAC key).

    Remembers which keys verified something and which signatures named a key
    outside the trusted set, so callers can report fingerprints.
    """

    keys: list[PublicKey]
    hmac_signer: HmacSigner | None = None
    used: dict[str, PublicKey] = field(default_factory=dict)
    untrusted: dict[str, PublicKey] = field(default_factory=dict)
    unreadable: set[str] = field(default_factory=set)

    def verify(self, message: bytes, signature: str, *, key_id: str, algorithm: str) -> bool:
        if algorithm == HMAC_SHA256:
            return self.hmac_signer is not None and self.hmac_signer.verify(
                message, signature, key_id=key_id, algorithm=algorithm
            )
        try:
            claimed = public_key_from_key_id(key_id, algorithm)
        except KeyFormatError:
            self.unreadable.add(key_id)
            return False
        if claimed not in self.keys:
            # A valid signature by a key we do not hold proves nothing: anyone
            # who rewrites the file can sign it with a key of their own.
            self.untrusted[claimed.fingerprint] = claimed
            return False
        raw = _decoded_signature(signature)
        if raw is None or not claimed.verify(message, raw):
            return False
        self.used[claimed.fingerprint] = claimed
        return True


# --- The provider signer -------------------------------------------------------------------


class ProviderSigner:
    """Signs with the key provider's signing key; trusts only that provider's keys (and legacy HMAC)."""

    def __init__(self, provider: SigningProvider, *, legacy_hmac: HmacSigner | None = None) -> None:
        self._provider = provider
        self.key_id = provider.signing_key_id()
        self.algorithm = provider.signing_algorithm()
        self._trusted: TrustedKeys | None = None
        self._legacy_hmac = legacy_hmac

    @property
    def trusted(self) -> TrustedKeys:
        """The provider's current and previous signing keys, read once."""
        if self._trusted is None:
            # A provider signs with one algorithm; its previous keys used the same one.
            keys = [public_key_from_key_id(key_id, self.algorithm) for key_id in self._provider.signing_key_ids()]
            self._trusted = TrustedKeys(keys=keys, hmac_signer=self._legacy_hmac)
        return self._trusted

    @property
    def public_key(self) -> PublicKey:
        return public_key_from_key_id(self.key_id, self.algorithm)

    def sign(self, message: bytes) -> str:
        made = self._provider.sign(message=message)
        if made.key_id != self.key_id or made.algorithm != self.algorithm:
            # The provider's key changed under us (a rotation mid-run): the
            # stored key id must name the key that actually signed.
            raise RuntimeError("the signing key changed while signing; retry")
        return base64.b64encode(made.signature).decode("ascii")

    def verify(self, message: bytes, signature: str, *, key_id: str, algorithm: str) -> bool:
        return self.trusted.verify(message, signature, key_id=key_id, algorithm=algorithm)


_factory: Callable[[], Signer] | None = None


def set_signer_factory(factory: Callable[[], Signer] | None) -> None:
    """Plug in another signer (a KMS key, or a test double); None restores the default."""
    global _factory  # noqa: PLW0603 - one process-wide choice, like the processor factory
    _factory = factory


def legacy_hmac_signer() -> HmacSigner | None:
    """The HMAC signer of SETTLE_AUDIT_SIGNING_KEY, or None where no such key is configured."""
    from django.core.exceptions import ImproperlyConfigured

    from audit import conf

    try:
        return HmacSigner(conf.signing_key(), conf.signing_key_id())
    except ImproperlyConfigured:
        return None


def current_signer() -> Signer:
    if _factory is not None:
        return _factory()
    from audit import conf

    if conf.signer_kind() == "hmac":
        return HmacSigner(conf.signing_key(), conf.signing_key_id())
    from security.crypto.providers import get_signing_provider

    return ProviderSigner(get_signing_provider(), legacy_hmac=legacy_hmac_signer())


def fingerprints(keys: Iterable[PublicKey]) -> str:
    return ", ".join(sorted({key.fingerprint for key in keys})) or "none"


def published_keys() -> tuple[PublicKey, list[PublicKey]] | None:
    """(the current signing public key, earlier keys still trusted), for auditors to pin.

    None when records are signed with the legacy HMAC key, which has no public half.
    """
    signer = current_signer()
    if not isinstance(signer, ProviderSigner):
        return None
    current = signer.public_key
    return current, [key for key in signer.trusted.keys if key != current]
