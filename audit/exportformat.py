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

import binascii
import csv
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from audit.chain import RECORD_FIELDS, digest_text, dumps_line
from audit.signing import Signer
from audit.verification import ChainVerifier, Checkpoint, VerificationResult

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


_CSV_COLUMNS = [f for f in RECORD_FIELDS if f != "chain"]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> str:
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


def _write_footer(out: _Hashing, stats: SegmentStats, signer: Signer) -> None:
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


def _open_segment(
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
        writer.writerow(_CSV_COLUMNS)
    verifier = ChainVerifier(
        str(header["chain"]),
        start_sequence=start_sequence,
        start_prev_hash=start_prev_hash,
        checkpoints=checkpoints,
        signer=signer,
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
    out, writer, verifier = _open_segment(
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
                writer.writerow([_csv_cell(record[c]) for c in _CSV_COLUMNS])
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
    _write_footer(out, stats, signer)
    if progress is not None:
        progress(processed)
    return stats


# One prepared row of the fast export path: a line of PostgreSQL's COPY text
# output (no newline) with nine tab-separated fields,
#     sequence, prev_hash, hash, head, details_text, tail, action, outcome, actor_role
# where head + canonical(details) + tail + ',"v":1}' is the event's canonical
# JSON when the database rendered every value as audit.chain does. head holds
# the fields that sort before "details", tail those after it (without "v").
PreparedRow = bytes


def _canonical_details(text: bytes) -> bytes:
    return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def write_segment_rows(
    *,
    jsonl: BinaryIO,
    csv_sink: BinaryIO | None,
    header: Mapping[str, Any],
    batches: Iterable[Sequence[PreparedRow]],
    fetch_record: Callable[[int], Mapping[str, Any]],
    start_sequence: int,
    start_prev_hash: str,
    checkpoints: list[Checkpoint],
    filters: Filters,
    signer: Signer,
    progress: Callable[[int], None] | None = None,
    progress_every: int = 1000,
) -> SegmentStats:
    """write_segment over rows the database pre-rendered; the same output, byte for byte.

    Every event is still re-hashed here: SHA-256 over the candidate canonical
    bytes must equal the stored hash, and those very bytes (plus the hash and
    the type) become the JSONL line, so what ships is exactly what was hashed.
    A row whose candidate does not match (something the database renders
    differently, e.g. escaped or non-ASCII text, or real tampering), that
    breaks the sequence or the link, or that a checkpoint covers goes through
    the ordinary per-record path (`fetch_record` reads it through the ORM) and
    the ChainVerifier, which reports any problem exactly as write_segment does.
    """
    out, writer, verifier = _open_segment(
        jsonl, csv_sink, header, start_sequence, start_prev_hash, checkpoints, filters, signer
    )
    result = verifier.result
    stats = SegmentStats()
    checkpoint_at = {c.sequence for c in checkpoints}
    decode = writer is not None or bool(filters.as_dict())
    counts: Counter[tuple[bytes, bytes, bytes]] = Counter()
    # digest_text() without its Python-level wrappers: base64, cut to 43, made url-safe.
    sha256, b64, to_url = hashlib.sha256, binascii.b2a_base64, bytes.maketrans(b"+/", b"-_")
    loads, digest, sink = json.loads, out.digest, out.sink
    expected, prev = start_sequence, start_prev_hash.encode()
    pending = 0  # events verified inline since the verifier was last brought up to date
    processed, next_report = 0, progress_every
    last_sequence: int | None = None
    last_hash = b""

    def sync() -> None:
        # Bring the ChainVerifier up to date with the events verified inline
        # (the same bookkeeping as its _after() for an event without checkpoint).
        nonlocal pending
        if pending:
            if result.first_sequence is None:
                result.first_sequence = expected - pending
            result.events_checked += pending
            result.last_sequence, result.last_hash = expected - 1, prev.decode()
            verifier._next, verifier._prev_hash = expected, prev.decode()  # noqa: SLF001
            pending = 0

    def emit(record: Mapping[str, Any], parts: list[bytes]) -> None:
        # The ordinary path, as in write_segment.
        if filters.matches(record):
            parts.append(dumps_line({"type": "event", **record}))
            stats.events += 1
            action, outcome, role = (str(record[k]).encode() for k in ("action", "outcome", "actor_role"))
            counts[(action, outcome, role)] += 1
            if writer is not None:
                writer.writerow([_csv_cell(record[c]) for c in _CSV_COLUMNS])
        else:
            link = {"type": "link", "sequence": record["sequence"], "prev_hash": record["prev_hash"]}
            parts.append(dumps_line({**link, "hash": record["hash"]}))
            stats.links += 1

    for batch in batches:
        parts: list[bytes] = []
        for raw in batch:
            fields = raw.split(b"\t")
            sequence = int(fields[0])
            line = None
            stored = fields[2] if len(fields) == 9 else b""
            if len(fields) == 9 and sequence == expected and fields[1] == prev and b"\\" not in raw:
                head, details, tail = fields[3], fields[4], fields[5]
                canonical = details.replace(b": ", b":").replace(b", ", b",")
                if b64(sha256(head + canonical + tail + b',"v":1}').digest())[:43].translate(to_url) != stored:
                    try:
                        canonical = _canonical_details(details)
                    except ValueError:
                        canonical = b""
                    if b64(sha256(head + canonical + tail + b',"v":1}').digest())[:43].translate(to_url) != stored:
                        canonical = b""
                if canonical:
                    line = head + canonical + b',"hash":"' + stored + b'"' + tail + b',"type":"event"}\n'
            if line is not None and sequence not in checkpoint_at:
                expected, prev = sequence + 1, stored
                pending += 1
                if decode:
                    record = loads(line)
                    del record["type"]
                    emit(record, parts)
                else:
                    parts.append(line)
                    stats.events += 1
                    counts[(fields[6], fields[7], fields[8])] += 1
            else:
                sync()
                record = dict(loads(line)) if line is not None else dict(fetch_record(sequence))
                record.pop("type", None)
                verifier.add_event(record)
                expected, prev = verifier._next, verifier._prev_hash.encode()  # noqa: SLF001
                emit(record, parts)
                stored = str(record["hash"]).encode()
            if last_sequence is None:
                stats.first_sequence = sequence
            last_sequence, last_hash = sequence, stored
        if parts:
            blob = b"".join(parts)
            digest.update(blob)
            sink.write(blob)
        processed += len(batch)
        if progress is not None and processed >= next_report:
            progress(processed)
            next_report = (processed // progress_every + 1) * progress_every
    sync()
    for (action, outcome, role), n in counts.items():
        stats.by_action[action.decode()] += n
        stats.by_outcome[outcome.decode()] += n
        stats.by_role[role.decode() or "(none)"] += n
    stats.last_sequence = last_sequence
    stats.last_hash = last_hash.decode()
    stats.verification = verifier.finish()
    _write_footer(out, stats, signer)
    if progress is not None:
        progress(processed)
    return stats


def footer_message(footer: Mapping[str, Any]) -> bytes:
    """The bytes a footer's signature covers: every footer field but the signature."""
    body = {k: v for k, v in footer.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
