"""Checkpoint anchors: copies of signed checkpoints kept outside the database.

A signed checkpoint row proves what a chain's head was only while the row
survives; a database superuser can delete checkpoint rows and then rewrite
or cut the chain after them. Every checkpoint is therefore also written, as
it is made, to a store the database cannot reach: S3 with Object Lock in
production, an append-only file in development and tests
(audit.services.anchoring). Verification reads the store and checks the
chain against it (audit.verification.ChainVerifier, `anchors=`).

Pure Python, no Django: the offline verifier (`python -m audit.verify
--anchors PATH`) reads anchors with this module too.

An anchor is one canonical JSON line (audit.chain.dumps_line):

    {"type": "anchor", "chain": ..., "sequence": S, "hash": ..., "signed_at": ...,
     "key_id": ..., "algorithm": ..., "signature": ...}

exactly the signed checkpoint, so its signature is checked like any other.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from audit.chain import dumps_line
from audit.verification import Checkpoint

ANCHOR_TYPE = "anchor"


class AnchorError(ValueError):
    """An anchor store or file could not be read, or holds something that is not an anchor."""


def anchor_line(*, chain: str, checkpoint: Checkpoint) -> bytes:
    """The bytes stored for one anchor (a newline-terminated canonical JSON line)."""
    return dumps_line({"type": ANCHOR_TYPE, "chain": chain, **checkpoint.__dict__})


def parse_anchor(raw: bytes, *, where: str) -> tuple[str, Checkpoint]:
    """(chain, checkpoint) of one stored anchor line; AnchorError names `where` when it is not one."""
    try:
        obj = json.loads(raw)
        if not isinstance(obj, dict) or obj.get("type") != ANCHOR_TYPE:
            raise ValueError
        checkpoint = Checkpoint(
            sequence=int(obj["sequence"]),
            hash=str(obj["hash"]),
            signed_at=str(obj["signed_at"]),
            key_id=str(obj["key_id"]),
            algorithm=str(obj["algorithm"]),
            signature=str(obj["signature"]),
        )
        return str(obj["chain"]), checkpoint
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise AnchorError(f"{where} is not a checkpoint anchor") from None


@dataclass
class AnchorSet:
    """What a store holds for one chain: every anchored sequence, and the anchors read in full.

    `sequences` is cheap to list (object names); `latest` is the newest anchor
    (read in full) that the verification is bounded by; `problems` are
    store-level findings (an anchor overwritten, two different anchors for
    one sequence), each itself a sign of tampering.
    """

    source: str
    sequences: set[int] = field(default_factory=set)
    latest: Checkpoint | None = None
    problems: list[str] = field(default_factory=list)


def anchor_set_from(anchors: Iterable[tuple[str, Checkpoint]], *, chain: str, source: str) -> AnchorSet:
    """Collect the anchors of `chain` (others are ignored); different anchors for one sequence are a problem."""
    found = AnchorSet(source=source)
    by_sequence: dict[int, Checkpoint] = {}
    for anchor_chain, checkpoint in anchors:
        if anchor_chain != chain:
            continue
        known = by_sequence.get(checkpoint.sequence)
        if known is not None and known != checkpoint:
            found.problems.append(f"the anchor store holds two different anchors for sequence {checkpoint.sequence}")
            continue
        by_sequence[checkpoint.sequence] = checkpoint
    found.sequences = set(by_sequence)
    if by_sequence:
        found.latest = by_sequence[max(by_sequence)]
    return found


def read_anchor_file(path: Path) -> list[tuple[str, Checkpoint]]:
    """Every anchor in a JSONL anchor file (the development store's file, or one downloaded object)."""
    anchors = []
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            if not raw.strip():
                continue
            anchors.append(parse_anchor(raw, where=f"{path.name} line {number}"))
    return anchors


def read_anchor_path(path: Path) -> list[tuple[str, Checkpoint]]:
    """Anchors from a file, or from every *.json / *.jsonl file in a folder (objects synced from S3)."""
    if path.is_dir():
        anchors: list[tuple[str, Checkpoint]] = []
        for item in sorted(path.rglob("*")):
            if item.is_file() and item.suffix in (".json", ".jsonl"):
                anchors.extend(read_anchor_file(item))
        return anchors
    return read_anchor_file(path)


def signed_before(anchors: Iterable[tuple[str, Checkpoint]], *, before: str | None) -> list[tuple[str, Checkpoint]]:
    """Only the anchors signed before `before` (canonical times compare as text); all when None."""
    return [(c, a) for c, a in anchors if before is None or a.signed_at < before]
