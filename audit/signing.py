"""Who signs checkpoints and export seals.

A signer has a key id, an algorithm name and sign/verify over bytes. The HMAC
signer uses a key from settings (audit.conf.signing_key) until issue 4's key
provider lands; a KMS signer (e.g. AWS KMS `Sign` with an asymmetric key, whose
public half lets anyone verify offline) implements the same protocol and is
selected by `set_signer_factory`. Signatures are stored with their key id and
algorithm, so old checkpoints stay verifiable after the key changes.

No Django import at module level: the offline verifier uses HmacSigner.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from typing import Protocol


class Signer(Protocol):
    key_id: str
    algorithm: str

    def sign(self, message: bytes) -> str:
        """The base64 signature of `message`."""
        ...

    def verify(self, message: bytes, signature: str, *, key_id: str, algorithm: str) -> bool:
        """True when `signature` over `message` was made with this signer's key."""
        ...


class HmacSigner:
    algorithm = "HMAC-SHA256"

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


_factory: Callable[[], Signer] | None = None


def set_signer_factory(factory: Callable[[], Signer] | None) -> None:
    """Plug in another signer (a KMS key, or a test double); None restores the default."""
    global _factory  # noqa: PLW0603 - one process-wide choice, like the processor factory
    _factory = factory


def current_signer() -> Signer:
    if _factory is not None:
        return _factory()
    from audit import conf

    return HmacSigner(conf.signing_key(), conf.signing_key_id())
