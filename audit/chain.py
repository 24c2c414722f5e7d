"""The hash chain: canonical serialisation of an event and its hash.

Pure Python with no Django import, so the offline verifier (`python -m
audit.verify`) runs on a machine that has only this package.

Invariants:
- Each chain (one per tenant, one for the platform) numbers its events 1, 2, 3…
  with no gaps; event n carries prev_hash = hash of event n-1 (GENESIS for 1).
- hash = SHA-256 over the canonical JSON of every recorded field, including the
  chain key, the sequence and prev_hash, so editing, moving, deleting or
  inserting an event breaks either its own hash or the next event's link.
- The canonical form is JSON with sorted keys, no whitespace, ASCII only; digests are unpadded base64url;
  details hold only strings, integers, booleans, null and lists of strings
  (enforced by the recorder), so there is no float or key-order ambiguity.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

# Digests are written as unpadded base64url (43 characters), not hex: hex
# digests contain long runs of decimal digits, some Luhn-valid, which card
# number scanners (ours: security.cardscan; and any DLP tool) would flag.
GENESIS = "A" * 43  # the digest text of 32 zero bytes
CANONICAL_VERSION = 1
PLATFORM_CHAIN = "platform"

# The fields an event's hash covers, in the order exports list them.
HASHED_FIELDS = (
    "chain",
    "sequence",
    "public_id",
    "occurred_at",
    "actor_user_id",
    "actor_role",
    "action",
    "target_type",
    "target_id",
    "outcome",
    "source_ip",
    "request_id",
    "details",
    "prev_hash",
)
RECORD_FIELDS = (*HASHED_FIELDS, "hash")


def format_time(value: datetime) -> str:
    """UTC, microsecond precision, trailing Z: the one textual form of a time."""
    if value.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


_CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def canonical_json(value: Any) -> str:
    """A value as the canonical form writes it (sorted keys, no whitespace, ASCII)."""
    return _CANONICAL_ENCODER.encode(value)


def canonical_bytes(record: Mapping[str, Any]) -> bytes:
    body = {field: record[field] for field in HASHED_FIELDS}
    body["v"] = CANONICAL_VERSION
    return canonical_json(body).encode("ascii")


# The values an append on PostgreSQL fills in under the chain lock (see
# canonical_template), in canonical (sorted-key) order.
TEMPLATE_HOLES = ("occurred_at", "prev_hash", "sequence")


def canonical_template(record: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """The canonical JSON of `record` in four pieces, around the values of TEMPLATE_HOLES.

    For any record, with t = canonical_template(record):
    canonical_bytes(record) == (t[0] + format_time(occurred_at) + t[1] + prev_hash
    + t[2] + str(sequence) + t[3]).encode("ascii").
    The hole values need no JSON escaping (a format_time string, a digest
    text, an integer), so the database can splice them in as text.
    `record` needs every HASHED_FIELDS key but the holes.
    """
    pieces: list[str] = []
    current = ["{"]
    for number, key in enumerate(sorted((*HASHED_FIELDS, "v"))):
        label = ("," if number else "") + canonical_json(key) + ":"
        if key in TEMPLATE_HOLES:
            quote = "" if key == "sequence" else '"'
            current.append(label + quote)
            pieces.append("".join(current))
            current = [quote]
            continue
        value = CANONICAL_VERSION if key == "v" else record[key]
        current.append(label + canonical_json(value))
    current.append("}")
    pieces.append("".join(current))
    first, second, third, fourth = pieces
    return first, second, third, fourth


def event_hash(record: Mapping[str, Any]) -> str:
    return digest_text(hashlib.sha256(canonical_bytes(record)).digest())


def digest_text(digest: bytes) -> str:
    """The text form of a digest: unpadded base64url."""
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def checkpoint_message(*, chain: str, sequence: int, head_hash: str, signed_at: str) -> bytes:
    """The bytes a checkpoint signature covers."""
    body = {"chain": chain, "sequence": sequence, "hash": head_hash, "signed_at": signed_at, "v": CANONICAL_VERSION}
    return canonical_json(body).encode("ascii")


def dumps_line(obj: Mapping[str, Any]) -> bytes:
    """One JSONL line of an export or archive (canonical form, newline-terminated)."""
    return canonical_json(obj).encode("ascii") + b"\n"
