"""Encryption at rest for export files: streaming AES-256-GCM, envelope keys.

Each file gets a fresh 256-bit data key, wrapped by a KeyWrapper (the local
wrapper uses a master key from settings until issue 4's KMS provider; a KMS
wrapper implements the same two methods). The file is a header line and then
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
from typing import BinaryIO, Protocol

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


def default_wrapper() -> KeyWrapper:
    from audit import conf

    return LocalKeyWrapper(conf.export_master_key())


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + struct.pack(">I", counter) + (b"\x01" if last else b"\x00")


class EncryptingWriter:
    """A binary file-like sink that encrypts everything written to it."""

    def __init__(self, sink: BinaryIO, *, context: dict[str, str], wrapper: KeyWrapper | None = None) -> None:
        wrapper = wrapper or default_wrapper()
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
        while len(self._buffer) > CHUNK:
            self._emit(bytes(self._buffer[:CHUNK]), last=False)
            del self._buffer[:CHUNK]
        return len(data)

    def _emit(self, plain: bytes, *, last: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._prefix, self._counter, last), plain, self._aad)
        self._counter += 1
        self._sink.write(_LEN.pack(len(sealed)) + sealed)

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
