"""Writers for the three export files and archive segments.

JSONL layout (one canonical JSON object per line, see docs/audit.md):

    {"type": "header", ...}            what, which chain, which range and filters
    {"type": "checkpoint", ...}        signed checkpoints inside the segment
    {"type": "event", ...}             an event that matches the filters (all fields)
    {"type": "link", ...}              an event outside the filters: its hashes only
    {"type": "footer", ...}            counts, SHA-256 of every line above, signature

Events and links together form the contiguous chain segment, so the offline
verifier can recompute every hash and link without seeing filtered-out
events' contents. The footer's digest and signature cover the header and
checkpoint lines too: one changed byte anywhere fails verification.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from audit.chain import RECORD_FIELDS, canonical_json, digest_text, dumps_line
from audit.signing import Signer
from audit.verification import ChainVerifier, Checkpoint, VerificationResult, reaches_its_generation

FORMAT_NAME = "settle-audit-export"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Filters:
    """Validated filters (references only: action names, outcomes, public ids)."""

    action: str = ""
    outcome: str = ""
    actor: str = ""  # user public id
    patient: str = ""  # patient public id: target or any listed reference
    target_type: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Filters:
        return cls(**{k: str(data.get(k) or "") for k in ("action", "outcome", "actor", "patient", "target_type")})

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v}

    def matches(self, record: Mapping[str, Any]) -> bool:
        if self.action and record["action"] != self.action:
            return False
        if self.outcome and record["outcome"] != self.outcome:
            return False
        if self.actor and record["actor_user_id"] != self.actor:
            return False
        if self.target_type and record["target_type"] != self.target_type:
            return False
        if self.patient:
            if record["target_type"] == "patient" and record["target_id"] == self.patient:
                return True
            patients = record["details"].get("patients") if isinstance(record["details"], dict) else None
            return isinstance(patients, list) and self.patient in patients
        return True


class _Hashing:
    """Writes lines to a sink while hashing them."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.digest = hashlib.sha256()

    def line(self, obj: Mapping[str, Any]) -> None:
        data = dumps_line(obj)
        self.digest.update(data)
        self.sink.write(data)


class _TextSink:
    def __init__(self, sink: Any) -> None:
        self.sink = sink

    def write(self, text: str) -> int:
        self.sink.write(text.encode("utf-8"))
        return len(text)


CSV_COLUMNS = [f for f in RECORD_FIELDS if f != "chain"]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    text = (
        json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else ("" if value is None else str(value))
    )
    # Spreadsheets must never read a cell as a formula (CSV injection).
    return "'" + text if text.startswith(_FORMULA_START) else text


@dataclass
class SegmentStats:
    events: int = 0
    links: int = 0
    by_action: Counter[str] = field(default_factory=Counter)
    by_outcome: Counter[str] = field(default_factory=Counter)
    by_role: Counter[str] = field(default_factory=Counter)
    first_sequence: int | None = None
    last_sequence: int | None = None
    last_hash: str = ""
    verification: VerificationResult | None = None
    sha256: str = ""


def _write_preamble(
    out: _Hashing,
    header: Mapping[str, Any],
    start_sequence: int,
    start_prev_hash: str,
    checkpoints: list[Checkpoint],
    filters: Filters,
) -> None:
    out.line(
        {
            "type": "header",
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "first_sequence": start_sequence,
            "start_prev_hash": start_prev_hash,
            "filters": filters.as_dict(),
            **header,
        }
    )
    for checkpoint in checkpoints:
        out.line({"type": "checkpoint", **checkpoint.__dict__})


def write_footer(out: _Hashing, stats: SegmentStats, signer: Signer) -> None:
    footer: dict[str, Any] = {
        "type": "footer",
        "events": stats.events,
        "links": stats.links,
        "last_sequence": stats.last_sequence,
        "last_hash": stats.last_hash,
        "sha256": digest_text(out.digest.digest()),
        "key_id": signer.key_id,
        "algorithm": signer.algorithm,
    }
    footer["signature"] = signer.sign(footer_message(footer))
    out.line(footer)
    stats.sha256 = digest_text(out.digest.digest())


def open_segment(
    jsonl: BinaryIO,
    csv_sink: BinaryIO | None,
    header: Mapping[str, Any],
    start_sequence: int,
    start_prev_hash: str,
    checkpoints: list[Checkpoint],
    filters: Filters,
    signer: Signer,
) -> tuple[_Hashing, Any, ChainVerifier]:
    """Write the preamble and CSV header; the verifier that checks the segment's events."""
    out = _Hashing(jsonl)
    _write_preamble(out, header, start_sequence, start_prev_hash, checkpoints, filters)
    writer = csv.writer(_TextSink(csv_sink)) if csv_sink is not None else None
    if writer is not None:
        writer.writerow(CSV_COLUMNS)
    verifier = ChainVerifier(
        str(header["chain"]),
        start_sequence=start_sequence,
        start_prev_hash=start_prev_hash,
        checkpoints=checkpoints,
        signer=signer,
        complete=reaches_its_generation(header),
    )
    return out, writer, verifier


def write_segment(
    *,
    jsonl: BinaryIO,
    csv_sink: BinaryIO | None,
    header: Mapping[str, Any],
    records: Iterable[Mapping[str, Any]],
    start_sequence: int,
    start_prev_hash: str,
    checkpoints: list[Checkpoint],
    filters: Filters,
    signer: Signer,
    progress: Callable[[int], None] | None = None,
    progress_every: int = 1000,
) -> SegmentStats:
    """Stream one chain segment into JSONL (and matching events into CSV), verifying as it goes."""
    out, writer, verifier = open_segment(
        jsonl, csv_sink, header, start_sequence, start_prev_hash, checkpoints, filters, signer
    )
    stats = SegmentStats()
    processed = 0
    for record in records:
        verifier.add_event(record)
        if filters.matches(record):
            out.line({"type": "event", **record})
            stats.events += 1
            stats.by_action[record["action"]] += 1
            stats.by_outcome[record["outcome"]] += 1
            stats.by_role[record["actor_role"] or "(none)"] += 1
            if writer is not None:
                writer.writerow([csv_cell(record[c]) for c in CSV_COLUMNS])
        else:
            out.line(
                {
                    "type": "link",
                    "sequence": record["sequence"],
                    "prev_hash": record["prev_hash"],
                    "hash": record["hash"],
                }
            )
            stats.links += 1
        if stats.first_sequence is None:
            stats.first_sequence = record["sequence"]
        stats.last_sequence = record["sequence"]
        stats.last_hash = record["hash"]
        processed += 1
        if progress is not None and processed % progress_every == 0:
            progress(processed)
    stats.verification = verifier.finish()
    write_footer(out, stats, signer)
    if progress is not None:
        progress(processed)
    return stats


def footer_message(footer: Mapping[str, Any]) -> bytes:
    """The bytes a footer's signature covers: every footer field but the signature."""
    body = {k: v for k, v in footer.items() if k != "signature"}
    return canonical_json(body).encode("ascii")
