"""The keys `python -m audit.verify` trusts, and what it says about them.

Standard library only: `cryptography` is imported (through audit.signing)
only when a public key is read or a public-key signature checked.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
from collections.abc import Callable
from pathlib import Path

from audit.signing import HmacSigner, PublicKey, TrustedKeys, fingerprints, public_key_from_pem

NEEDS_CRYPTOGRAPHY = (
    "checking public-key signatures needs the 'cryptography' package (pip install cryptography); "
    "without --public-key the chain, links and digest are checked with the standard library alone"
)


class KeyFileError(ValueError):
    """A key given on the command line cannot be used: the message says why."""


def hmac_signer_from(args: argparse.Namespace) -> HmacSigner | None:
    raw: str | None = None
    if args.key_file:
        raw = Path(args.key_file).read_text().strip()
    elif os.environ.get("SETTLE_AUDIT_SIGNING_KEY"):
        raw = os.environ["SETTLE_AUDIT_SIGNING_KEY"]
    if raw is None:
        return None
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError("the signing key must be base64") from None
    key_id = args.key_id or os.environ.get("SETTLE_AUDIT_SIGNING_KEY_ID") or "local-hmac-1"
    return HmacSigner(key, key_id)


def signer_from(args: argparse.Namespace) -> TrustedKeys | None:
    """The keys this run trusts: pinned public keys and/or the legacy HMAC key; None when neither."""
    try:
        pinned = [public_key_from_pem(Path(name).read_bytes()) for name in args.public_key or []]
    except ImportError:
        raise KeyFileError(NEEDS_CRYPTOGRAPHY) from None
    hmac_signer = hmac_signer_from(args)
    if not pinned and hmac_signer is None:
        return None
    return TrustedKeys(keys=pinned, hmac_signer=hmac_signer)


def key_lines_for(claimed_keys: Callable[[], list[PublicKey]], trusted: TrustedKeys | None) -> list[tuple[bool, str]]:
    """(is_problem, line) about the keys: which verified, which were refused, which went unchecked.

    `claimed_keys`: the public keys the file's signatures name (needs `cryptography`).
    """
    try:
        claimed = claimed_keys()
    except ImportError:
        # Only the fingerprints need it here: say so instead of failing a check that passed.
        return [(False, "The file's signing keys are not listed: install 'cryptography' to see their fingerprints.")]
    if trusted is None:
        if not claimed:
            return []
        return [(False, f"The file names signing key(s) {fingerprints(claimed)}; pin one with --public-key FILE.")]
    lines: list[tuple[bool, str]] = []
    if trusted.used:
        lines.append((False, f"Signatures verified with pinned key(s) {fingerprints(trusted.used.values())}."))
    if trusted.untrusted:
        lines.append(
            (
                True,
                f"signed by key(s) {fingerprints(trusted.untrusted.values())}, not the pinned key(s) "
                f"{fingerprints(trusted.keys)}: not trusted",
            )
        )
    if trusted.unreadable:
        lines.append((True, "a signature names a key id that carries no usable public key"))
    if claimed and not trusted.keys:
        lines.append((True, f"the file is signed by public key(s) {fingerprints(claimed)}; pin with --public-key"))
    return lines
