"""Encryption at rest for export files: streaming AES-256-GCM, envelope keys.

Each file gets a fresh 256-bit data key from the key provider
(security.crypto.providers: the local master key or AWS KMS GenerateDataKey),
wrapped under an encryption context naming the purpose ("audit-export"), the
tenant, the export and the file, and stored wrapped in the file's header
(ProviderKeyWrapper, the default). Files written before that carry a key
wrapped by the legacy export master key from settings (LocalKeyWrapper, key id
"local-export-1"); they still decrypt wherever SETTLE_AUDIT_EXPORT_KEY is
configured (in development it is derived from SECRET_KEY). The file is a header line and then
frames of at most CHUNK bytes, each sealed with AES-GCM under a nonce made of
a random prefix, the frame counter and a last-frame flag, with the file's
associated data (which export, which file). So frames cannot be reordered,
dropped, swapped between files or cut off at the end without decryption
failing. Memory stays at one frame whatever the file size.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from collections.abc import Iterator
from typing import Any, BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"SETTLE-AUDIT-ENC-1\n"
CHUNK = 64 * 1024
_LEN = struct.Struct(">I")


class DecryptionError(ValueError):
    pass


class KeyWrapper(Protocol):
    def wrap(self, data_key: bytes, *, context: dict[str, str]) -> tuple[str, bytes]:
        """(key id, wrapped data key) for a fresh data key bound to `context`."""
        ...

    def unwrap(self, key_id: str, wrapped: bytes, *, context: dict[str, str]) -> bytes: ...


class LocalKeyWrapper:
    """Wraps data keys with AES-GCM under a master key held in settings."""

    def __init__(self, master_key: bytes, key_id: str = "local-export-1") -> None:
        if len(master_key) != 32:
            raise ValueError("the export master key must be 32 bytes")
        self._aead = AESGCM(master_key)
        self.key_id = key_id

    @staticmethod
    def _aad(context: dict[str, str]) -> bytes:
        return json.dumps(context, sort_keys=True, separators=(",", ":")).encode()

    def wrap(self, data_key: bytes, *, context: dict[str, str]) -> tuple[str, bytes]:
        nonce = os.urandom(12)
        return self.key_id, nonce + self._aead.encrypt(nonce, data_key, self._aad(context))

    def unwrap(self, key_id: str, wrapped: bytes, *, context: dict[str, str]) -> bytes:
        if key_id != self.key_id:
            raise DecryptionError(f"unknown export key {key_id!r}")
        try:
            return self._aead.decrypt(wrapped[:12], wrapped[12:], self._aad(context))
        except InvalidTag:
            raise DecryptionError("the export's data key does not unwrap for this file") from None


EXPORT_PURPOSE = "audit-export"
# Key ids of provider-wrapped file keys: "kp:<provider name>|<provider key id>",
# so a file names the provider that can unwrap it even after the default changes.
_PROVIDER_PREFIX = "kp:"


def provider_context(context: dict[str, str]) -> dict[str, str]:
    """The encryption context given to the provider: the purpose plus the file's own context."""
    return {"settle:purpose": EXPORT_PURPOSE, **{f"settle:{k}": v for k, v in sorted(context.items())}}


class ProviderKeyWrapper:
    """File keys generated and wrapped by the key provider (GenerateDataKey), bound to purpose and file.

    Unwraps provider-wrapped keys through the provider the key id names, and
    legacy keys ("local-export-1") with the legacy master key when one is
    configured.
    """

    def __init__(self, provider_name: str | None = None, legacy: KeyWrapper | None = None) -> None:
        self._provider_name = provider_name
        self._legacy = legacy

    def _provider(self, name: str | None = None) -> Any:
        from security.crypto.providers import get_provider

        return get_provider(name or self._provider_name)

    def generate(self, *, context: dict[str, str]) -> tuple[bytes, str, bytes]:
        """(plaintext data key, key id, wrapped data key) for a fresh file key bound to `context`."""
        provider = self._provider()
        generated = provider.generate_data_key(context=provider_context(context))
        return generated.plaintext, f"{_PROVIDER_PREFIX}{provider.name}|{generated.key_id}", generated.wrapped

    def wrap(self, data_key: bytes, *, context: dict[str, str]) -> tuple[str, bytes]:
        provider = self._provider()
        wrapped, key_id = provider.wrap(plaintext=data_key, context=provider_context(context))
        return f"{_PROVIDER_PREFIX}{provider.name}|{key_id}", wrapped

    def unwrap(self, key_id: str, wrapped: bytes, *, context: dict[str, str]) -> bytes:
        from security.crypto.errors import KeyUnwrapError

        if not key_id.startswith(_PROVIDER_PREFIX):
            return self._legacy_wrapper(key_id).unwrap(key_id, wrapped, context=context)
        name, _, provider_key_id = key_id[len(_PROVIDER_PREFIX) :].partition("|")
        try:
            data_key = self._provider(name).unwrap(
                wrapped=wrapped, key_id=provider_key_id, context=provider_context(context)
            )
        except KeyUnwrapError:
            raise DecryptionError("the export's data key does not unwrap for this file") from None
        return bytes(data_key)

    def _legacy_wrapper(self, key_id: str) -> KeyWrapper:
        if self._legacy is not None:
            return self._legacy
        from django.core.exceptions import ImproperlyConfigured

        from audit import conf

        try:
            return LocalKeyWrapper(conf.export_master_key())
        except ImproperlyConfigured:
            raise DecryptionError(
                f"the file's key {key_id!r} was wrapped by the legacy export key, which is not configured "
                "(set SETTLE_AUDIT_EXPORT_KEY to read exports made before the key provider)"
            ) from None


def default_wrapper() -> KeyWrapper:
    return ProviderKeyWrapper()


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + struct.pack(">I", counter) + (b"\x01" if last else b"\x00")


class EncryptingWriter:
    """A binary file-like sink that encrypts everything written to it."""

    def __init__(self, sink: BinaryIO, *, context: dict[str, str], wrapper: KeyWrapper | None = None) -> None:
        wrapper = wrapper or default_wrapper()
        generate = getattr(wrapper, "generate", None)
        if callable(generate):
            # The provider makes the key (KMS GenerateDataKey: one call, key born wrapped).
            data_key, key_id, wrapped = generate(context=context)
        else:
            data_key = AESGCM.generate_key(bit_length=256)
            key_id, wrapped = wrapper.wrap(data_key, context=context)
        self._aead = AESGCM(data_key)
        self._prefix = os.urandom(7)
        self._aad = LocalKeyWrapper._aad(context)
        self._sink = sink
        self._buffer = bytearray()
        self._counter = 0
        self.plaintext_bytes = 0
        header = {
            "key_id": key_id,
            "wrapped_key": base64.b64encode(wrapped).decode(),
            "nonce_prefix": base64.b64encode(self._prefix).decode(),
            "chunk": CHUNK,
        }
        sink.write(MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n")

    def write(self, data: bytes) -> int:
        self._buffer += data
        self.plaintext_bytes += len(data)
        # Every full frame but the last stays: close() seals the final frame
        # (1 to CHUNK bytes) with the last-frame flag.
        full = (len(self._buffer) - 1) // CHUNK
        if full > 0:
            with memoryview(self._buffer) as view:
                for number in range(full):
                    self._emit(view[number * CHUNK : (number + 1) * CHUNK], last=False)
            del self._buffer[: full * CHUNK]
        return len(data)

    def _emit(self, plain: bytes | memoryview, *, last: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._prefix, self._counter, last), plain, self._aad)
        self._counter += 1
        self._sink.write(_LEN.pack(len(sealed)))
        self._sink.write(sealed)

    def close(self) -> None:
        self._emit(bytes(self._buffer), last=True)
        self._buffer.clear()


def _read_frame(source: BinaryIO) -> bytes | None:
    size_bytes = source.read(_LEN.size)
    if not size_bytes:
        return None
    if len(size_bytes) != _LEN.size:
        raise DecryptionError("the encrypted file is truncated")
    size = _LEN.unpack(size_bytes)[0]
    if size > CHUNK + 16:
        raise DecryptionError("the encrypted file is corrupt (frame too large)")
    sealed = source.read(size)
    if len(sealed) != size:
        raise DecryptionError("the encrypted file is truncated")
    return sealed


def decrypt_stream(source: BinaryIO, *, context: dict[str, str], wrapper: KeyWrapper | None = None) -> Iterator[bytes]:
    """Yield the plaintext of an encrypted file frame by frame; raises DecryptionError on any change."""
    wrapper = wrapper or default_wrapper()
    if source.read(len(MAGIC)) != MAGIC:
        raise DecryptionError("not an encrypted audit export")
    try:
        header = json.loads(source.readline())
        wrapped = base64.b64decode(header["wrapped_key"])
        prefix = base64.b64decode(header["nonce_prefix"])
        key_id = str(header["key_id"])
    except (ValueError, KeyError, TypeError):
        raise DecryptionError("the encrypted file's header is corrupt") from None
    aead = AESGCM(wrapper.unwrap(key_id, wrapped, context=context))
    aad = LocalKeyWrapper._aad(context)
    counter = 0
    current = _read_frame(source)
    if current is None:
        raise DecryptionError("the encrypted file is empty")
    while current is not None:
        following = _read_frame(source)
        last = following is None
        try:
            yield aead.decrypt(_nonce(prefix, counter, last), current, aad)
        except InvalidTag:
            raise DecryptionError(
                "the encrypted file was altered or truncated" if last else "the encrypted file was altered"
            ) from None
        counter += 1
        current = following
