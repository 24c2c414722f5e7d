"""AES-256-GCM field encryption and keyed blind indexes.

Ciphertext format (text, safe in any column):

    s1:<tenant id>:<purpose>:<key version>:<binding>:<payload>

- s1: the format version.
- tenant id, purpose, key version: which data key sealed it.
- binding: 12 hex digits of SHA-256 over (model, field, row id). Not secret
  (all three are known to whoever reads the row); it lets a failure say
  "sealed for another row" instead of only "does not decrypt".
- payload: url-safe base64 (no padding) of nonce (12 random bytes) ||
  ciphertext || GCM tag (16 bytes).

Associated data binds the header and the place the value lives: format,
tenant, purpose, version, model label, field name and row id. A ciphertext
copied to another row, field or tenant, or with any byte changed, fails
authentication: the error types in security.crypto.errors say which.

Blind index format: b<version>:<url-safe base64 of HMAC-SHA256[:16]>, keyed by
a per-tenant "index" data key and the index's own name, over a normalised
value (security.crypto.normalize).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from security.crypto import keyring
from security.crypto.errors import (
    MalformedCiphertextError,
    TamperedCiphertextError,
    WrongRowError,
    WrongTenantError,
)
from security.crypto.models import KeyPurpose

FORMAT = "s1"
_NONCE_BYTES = 12
_TAG_BYTES = 16
INDEX_BYTES = 16
_PURPOSES = frozenset(KeyPurpose.values)


class _NonceSource:
    """Random 96-bit GCM nonces, read from the OS in blocks.

    One getrandom() per nonce costs more than the encryption itself. The
    block is per process: it is dropped in a forked child (and checked by
    pid), so a parent and its workers never hand out the same bytes.
    """

    _BLOCK = _NONCE_BYTES * 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._buffer = b""
        self._offset = 0

    def take(self) -> bytes:
        with self._lock:
            if self._pid != os.getpid():
                self._reset()
            if self._offset + _NONCE_BYTES > len(self._buffer):
                self._buffer = os.urandom(self._BLOCK)
                self._offset = 0
            nonce = self._buffer[self._offset : self._offset + _NONCE_BYTES]
            self._offset += _NONCE_BYTES
            return nonce


_nonces = _NonceSource()


@functools.lru_cache(maxsize=65_536)
def _fingerprint(model_label: str, field_name: str, row_id: str) -> str:
    # Not secret (all three are known to whoever reads the row); cached because
    # a list page asks for the same rows' fingerprints over and over.
    text = f"{model_label}\x00{field_name}\x00{row_id}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Binding:
    """Where a value lives: the associated data of its ciphertext."""

    tenant_id: int
    model_label: str  # e.g. "billing.Patient"
    field_name: str
    row_id: str  # the row's stable public id

    def fingerprint(self) -> str:
        return _fingerprint(self.model_label, self.field_name, self.row_id)

    def associated_data(self, *, purpose: str, version: int) -> bytes:
        return _associated_data(self.tenant_id, purpose, version, self.model_label, self.field_name, self.row_id)


@functools.lru_cache(maxsize=65_536)
def _associated_data(
    tenant_id: int, purpose: str, version: int, model_label: str, field_name: str, row_id: str
) -> bytes:
    # Not secret (identifiers only); cached like the fingerprint, since a list
    # page and a save open and seal the same rows' fields again and again.
    return "\x00".join(
        (f"settle:{FORMAT}", str(tenant_id), purpose, str(version), model_label, field_name, row_id)
    ).encode()


@dataclass(frozen=True)
class Header:
    tenant_id: int
    purpose: str
    version: int
    binding: str
    payload: str


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse(token: str) -> Header:
    """Split a ciphertext into its header fields; MalformedCiphertextError if it is not one."""
    parts = token.split(":") if isinstance(token, str) else []
    if len(parts) != 6 or parts[0] != FORMAT:
        raise MalformedCiphertextError("value is not a Settle ciphertext (format s1)")
    _, tenant, purpose, version, binding, payload = parts
    if not tenant.isdigit() or not version.isdigit() or purpose not in _PURPOSES or len(binding) != 12:
        raise MalformedCiphertextError("ciphertext header is malformed")
    return Header(tenant_id=int(tenant), purpose=purpose, version=int(version), binding=binding, payload=payload)


def key_prefix(*, tenant_id: int, purpose: str, version: int) -> str:
    """The start of every ciphertext sealed with one data key version (for rotation queries)."""
    return _key_prefix(tenant_id, purpose, version)


@functools.lru_cache(maxsize=4_096)
def _key_prefix(tenant_id: int, purpose: str, version: int) -> str:
    return f"{FORMAT}:{tenant_id}:{purpose}:{version}:"


def seal(plaintext: bytes, *, binding: Binding, purpose: str) -> str:
    """Encrypt `plaintext` for `binding` with the tenant's active data key of `purpose`."""
    version, aead = keyring.encryption_aead(tenant_id=binding.tenant_id, purpose=purpose)
    return _seal(plaintext, binding=binding, purpose=purpose, version=version, aead=aead)


def seal_with(plaintext: bytes, *, binding: Binding, purpose: str, version: int, key: bytes) -> str:
    """Seal with an explicit key version (tests, and tools that must name the version)."""
    return _seal(plaintext, binding=binding, purpose=purpose, version=version, aead=AESGCM(key))


def _seal(plaintext: bytes, *, binding: Binding, purpose: str, version: int, aead: AESGCM) -> str:
    nonce = _nonces.take()
    sealed = aead.encrypt(nonce, plaintext, binding.associated_data(purpose=purpose, version=version))
    payload = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()
    return f"{_key_prefix(binding.tenant_id, purpose, version)}{binding.fingerprint()}:{payload}"


def open_(token: str, *, binding: Binding, purpose: str) -> bytes:
    """Decrypt a ciphertext read from `binding`. Raises a DecryptionError subclass, never returns garbage.

    WrongTenantError: sealed for another tenant. WrongRowError: for another
    row, model, field or purpose. TamperedCiphertextError: altered.
    UnknownDataKeyError: names a key version the tenant lacks.
    KeyUnavailableError: the key exists but cannot be unwrapped now.
    """
    header = parse(token)
    return open_parsed(
        header,
        binding=binding,
        purpose=purpose,
        aead_for=lambda version: keyring.decryption_aead(tenant_id=binding.tenant_id, purpose=purpose, version=version),
    )


def open_parsed(header: Header, *, binding: Binding, purpose: str, aead_for: Callable[[int], AESGCM]) -> bytes:
    """open_ of a parsed value, with the key of a version from `aead_for` (the keyring's, or a batch's)."""
    if header.tenant_id != binding.tenant_id:
        raise WrongTenantError(f"{binding.model_label}.{binding.field_name}: ciphertext belongs to another tenant")
    if header.purpose != purpose or not hmac.compare_digest(header.binding, binding.fingerprint()):
        raise WrongRowError(
            f"{binding.model_label}.{binding.field_name}: ciphertext was sealed for another row or field"
        )
    try:
        data = _b64decode(header.payload)
    except (binascii.Error, ValueError):
        raise TamperedCiphertextError(f"{binding.model_label}.{binding.field_name}: payload is not base64") from None
    if len(data) < _NONCE_BYTES + _TAG_BYTES:
        raise TamperedCiphertextError(f"{binding.model_label}.{binding.field_name}: ciphertext is truncated")
    aead = aead_for(header.version)
    try:
        return aead.decrypt(
            data[:_NONCE_BYTES], data[_NONCE_BYTES:], binding.associated_data(purpose=purpose, version=header.version)
        )
    except InvalidTag:
        raise TamperedCiphertextError(
            f"{binding.model_label}.{binding.field_name}: ciphertext failed authentication (altered)"
        ) from None


class Place:
    """Where values live (a Binding and a purpose), with what opening them needs worked out once.

    The header a value sealed here carries depends only on the place and the
    key version, not on the value; a list page opens several fields of many
    rows again and again. So each header seen here that passed open_'s checks
    is kept with its key version and associated data, and the next value with
    that header is checked with one string comparison (a dict look-up).
    Identifiers only, nothing secret: memoised like the fingerprint.
    """

    __slots__ = ("binding", "purpose", "tenant_id", "tenant_text", "fingerprint", "headers", "_sealing")

    def __init__(self, binding: Binding, purpose: str) -> None:
        self.binding = binding
        self.purpose = purpose
        self.tenant_id = binding.tenant_id
        self.tenant_text = str(binding.tenant_id)
        self.fingerprint = binding.fingerprint()
        # "s1:<tenant>:<purpose>:<version>:<fingerprint>:" -> (version, associated data)
        self.headers: dict[str, tuple[int, bytes]] = {}
        # version -> (header, associated data), for sealing
        self._sealing: dict[int, tuple[str, bytes]] = {}

    def sealing(self, version: int) -> tuple[str, bytes]:
        """(header, associated data) of a value sealed here with key `version`."""
        found = self._sealing.get(version)
        if found is None:
            header = f"{_key_prefix(self.binding.tenant_id, self.purpose, version)}{self.fingerprint}:"
            found = (header, self.binding.associated_data(purpose=self.purpose, version=version))
            self._sealing[version] = found
        return found

    def learn(self, header: str) -> tuple[int, bytes] | None:
        """(version, associated data) when `header` (up to the payload) is this place's; else None."""
        parts = header.split(":")
        if (
            len(parts) != 6
            or parts[0] != FORMAT
            or parts[1] != self.tenant_text
            or parts[2] != self.purpose
            or self.purpose not in _PURPOSES
            or parts[4] != self.fingerprint  # not secret: a plain comparison is enough
            or parts[5] != ""
            or not parts[3].isdigit()
        ):
            return None  # open_ decides what is wrong
        version = int(parts[3])
        known = (version, self.binding.associated_data(purpose=self.purpose, version=version))
        if header == f"{_key_prefix(self.binding.tenant_id, self.purpose, version)}{self.fingerprint}:":
            # Canonical headers only ("007" is read, not kept), so stored
            # values cannot grow the table.
            self.headers[header] = known
        return known


_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


def _payload_bytes(text: str) -> bytes | None:
    """_b64decode, inlined (what urlsafe_b64decode does, minus its call layers); None when invalid."""
    try:
        return binascii.a2b_base64(text.encode("ascii").translate(_URLSAFE_TO_STANDARD) + b"=" * (-len(text) % 4))
    except ValueError:  # binascii.Error and UnicodeEncodeError are ValueErrors
        return None


def seal_at(plaintext: bytes, place: Place) -> str:
    """seal(plaintext, binding=place.binding, purpose=place.purpose), with the place's work done once.

    Same key (the tenant's active one), nonce source, associated data and
    format as seal; only the header and associated data come from the place.
    """
    version, aead = keyring.encryption_aead(tenant_id=place.tenant_id, purpose=place.purpose)
    header, associated_data = place.sealing(version)
    nonce = _nonces.take()
    sealed = aead.encrypt(nonce, plaintext, associated_data)
    return header + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()


def open_at(token: str, place: Place) -> bytes:
    """open_(token, binding=place.binding, purpose=place.purpose), with the place's work done once.

    The checks are open_'s: a header naming this format, tenant, purpose and
    row fingerprint, a payload that decodes, and AES-GCM authentication with
    the place's associated data. Anything else takes open_ itself, which
    raises the specific error; so do failures, never a garbage value.
    """
    cut = token.rfind(":") + 1 if isinstance(token, str) else 0
    if cut:
        header = token[:cut]
        known = place.headers.get(header) or place.learn(header)
        data = _payload_bytes(token[cut:])
        if known is not None and data is not None and len(data) >= _NONCE_BYTES + _TAG_BYTES:
            version, associated_data = known
            aead = keyring.key_cache.fresh_aead(place.tenant_id, place.purpose, version)
            if aead is None:
                aead = keyring.decryption_aead(tenant_id=place.tenant_id, purpose=place.purpose, version=version)
            try:
                return aead.decrypt(data[:_NONCE_BYTES], data[_NONCE_BYTES:], associated_data)
            except InvalidTag:
                binding = place.binding
                raise TamperedCiphertextError(
                    f"{binding.model_label}.{binding.field_name}: ciphertext failed authentication (altered)"
                ) from None
    return open_(token, binding=place.binding, purpose=place.purpose)


# --- Blind indexes -----------------------------------------------------------------------


def _index_subkey(key: bytes, *, index_name: str) -> bytes:
    # A subkey per index, so equal values in two indexes do not match.
    return hmac.new(key, b"settle-blind-index\x00" + index_name.encode(), hashlib.sha256).digest()


def _index_digest_with(subkey: bytes, normalized: str) -> str:
    return _b64encode(hmac.new(subkey, normalized.encode(), hashlib.sha256).digest()[:INDEX_BYTES])


def _index_digest(key: bytes, *, index_name: str, normalized: str) -> str:
    return _index_digest_with(_index_subkey(key, index_name=index_name), normalized)


def blind_index(*, tenant_id: int, index_name: str, normalized: str) -> str:
    """The index value of an already-normalised value under the tenant's active index key."""
    version, key = keyring.encryption_key(tenant_id=tenant_id, purpose=KeyPurpose.INDEX)
    return f"b{version}:{_index_digest(key, index_name=index_name, normalized=normalized)}"


def blind_index_candidates(*, tenant_id: int, index_name: str, normalized: str) -> list[str]:
    """Index values under every live index key version (a rotation may be half done)."""
    versions = keyring.live_versions(tenant_id=tenant_id, purpose=KeyPurpose.INDEX)
    if not versions:
        # No index key yet: nothing was ever indexed. Create v1 so look-ups
        # and writes agree from here on.
        return [blind_index(tenant_id=tenant_id, index_name=index_name, normalized=normalized)]
    values = []
    for version in versions:
        key = keyring.decryption_key(tenant_id=tenant_id, purpose=KeyPurpose.INDEX, version=version)
        values.append(f"b{version}:{_index_digest(key, index_name=index_name, normalized=normalized)}")
    return values


def blind_index_candidates_many(*, tenant_id: int, index_name: str, normalized: Sequence[str]) -> list[list[str]]:
    """blind_index_candidates of many values, with the live key versions read once (batch look-ups)."""
    versions = keyring.live_versions(tenant_id=tenant_id, purpose=KeyPurpose.INDEX)
    if not versions:
        return [
            blind_index_candidates(tenant_id=tenant_id, index_name=index_name, normalized=value) for value in normalized
        ]
    subkeys = [
        (
            version,
            _index_subkey(
                keyring.decryption_key(tenant_id=tenant_id, purpose=KeyPurpose.INDEX, version=version),
                index_name=index_name,
            ),
        )
        for version in versions
    ]
    return [[f"b{version}:{_index_digest_with(subkey, value)}" for version, subkey in subkeys] for value in normalized]


def index_version(value: str) -> int | None:
    if not value or not value.startswith("b") or ":" not in value:
        return None
    head = value[1:].split(":", 1)[0]
    return int(head) if head.isdigit() else None
