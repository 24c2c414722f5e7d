"""The PostgreSQL fast path of the export: CopySegmentWriter turns COPY text rows into write_segment's output.

PostgreSQL streams the segment's raw columns as COPY text (one event a line,
tab-separated, in RAW_COLUMNS order: the canonical key order, then the
stored hash), the time already in canonical form (select_list); otherwise
what a plain `COPY … TO STDOUT` of the table costs the server. Python renders the canonical JSON of a whole block of rows with a few
bytes operations and precompiled %-templates, re-hashes every event and
checks sequences and links with list comparisons: per row, no Python
bytecode runs unless the block holds something unusual.
"""

from __future__ import annotations

import binascii
import bisect
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from itertools import repeat
from operator import methodcaller
from typing import Any, BinaryIO

from audit.blockwriter import BlockWriter
from audit.chain import CANONICAL_VERSION, canonical_json, dumps_line
from audit.exportformat import CSV_COLUMNS, Filters, SegmentStats, csv_cell, open_segment, write_footer
from audit.signing import Signer
from audit.verification import Checkpoint

RAW_COLUMNS = (
    "action",
    "actor_role",
    "actor_user_id",
    "details",
    "occurred_at",
    "outcome",
    "prev_hash",
    "public_id",
    "request_id",
    "sequence",
    "source_ip",
    "target_id",
    "target_type",
    "hash",
)
# occurred_at comes as the text format_time writes, less its "Z", rendered
# by PostgreSQL (less work for Python, which is the export's bottleneck).
# to_char is one-to-one on times of the Christian era (fixed-width fields,
# every microsecond, UTC whatever the session's time zone). For an earlier
# time its YYYY would drop the era, so such a time comes as its plain text,
# which is never canonical: its hash cannot match and it takes the record
# path, as an infinite time (to_char gives NULL) does.
_TIME_SQL = (
    "CASE WHEN {column} >= '0001-01-01 00:00:00+00' "
    "THEN to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') ELSE {column}::text END"
)


# The uuid and inet columns come as their JSON: the quoted text (exactly what
# COPY would print: abbrev() is inet's output function, where ::text would
# add a /32), or null. That text holds no quote and no backslash, so quoting
# is exact.
_STRING_OR_NULL_SQL = {
    "actor_user_id": "coalesce('\"' || {column}::text || '\"', 'null')",
    "source_ip": "coalesce('\"' || abbrev({column}) || '\"', 'null')",
}


def canonical_time_sql(column: str) -> str:
    """SQL for the timestamptz `column` (quoted name) as format_time writes it, less the "Z"."""
    return _TIME_SQL.format(column=column)


def column_sql(name: str, quote_name: Callable[[str], str]) -> str:
    """The COPY's expression for the raw column `name`: the time as canonical text, uuid and inet as JSON."""
    if name == "occurred_at":
        return canonical_time_sql(quote_name(name))
    if name in _STRING_OR_NULL_SQL:
        return _STRING_OR_NULL_SQL[name].format(column=quote_name(name))
    return quote_name(name)


def select_list(quote_name: Callable[[str], str]) -> str:
    """The SELECT list of RAW_COLUMNS for the COPY."""
    return ", ".join(column_sql(name, quote_name) for name in RAW_COLUMNS)


(
    _ACTION,
    _ROLE,
    _ACTOR,
    _DETAILS,
    _TIME,
    _OUTCOME,
    _PREV,
    _PUBLIC_ID,
    _REQUEST,
    _SEQUENCE,
    _IP,
    _TARGET,
    _TYPE,
    _HASH,
) = range(len(RAW_COLUMNS))
_WIDTH = len(RAW_COLUMNS)
# The canonical JSON (audit.chain.canonical_bytes) is head + tail + _VERSION_END;
# the JSONL line is head + ',"hash":"…"' + tail + _TYPE_END ("hash" and "type"
# sort to those places). The head template gets the chain key at run time.
_HEAD = b'{"action":"%s","actor_role":"%s","actor_user_id":%s,"chain":%s,"details":%s'
_TAIL = (
    b',"occurred_at":"%sZ","outcome":"%s","prev_hash":"%s","public_id":"%s","request_id":"%s",'
    b'"sequence":%s,"source_ip":%s,"target_id":"%s","target_type":"%s"'
)
_VERSION_END = b',"v":%d}' % CANONICAL_VERSION
_HASH_OPEN, _QUOTE, _TYPE_END = b',"hash":"', b'"', b',"type":"event"}\n'
_URL_SAFE = bytes.maketrans(b"+/", b"-_")
_DIGEST_CHARS = 43  # unpadded base64url of 32 bytes
_digest_of = methodcaller("digest")
# Heads and tails of a block's rows, and whether every row's hash matched.
_Rendered = tuple[list[bytes], list[bytes], bool]


class CopyFormatError(ValueError):
    """The COPY stream is not rows of RAW_COLUMNS (a programming error, never data)."""


def _quoting_suffices(block: bytes, columns: list[list[bytes]], details: bytes) -> bool:
    """True when quoting each value (and compacting jsonb's separators) yields its canonical JSON.

    That holds when the block has no backslash (so no value was escaped), no
    quote appears outside `details` but the two around each uuid and address
    (select_list quotes those, whose text holds none), and
    no string in `details` holds a space (so only jsonb's own ", " and ": "
    are compacted). With no backslash, the quotes of `details` alternate
    between opening and closing a string, so the odd pieces between quotes
    are the strings. Details stored as canonical text (audit.fields) hold
    no space at all, which one scan shows; only details stored as jsonb
    printed them (events from before migration audit 0008).
    """
    actors, ips = columns[_ACTOR], columns[_IP]
    quoted = len(actors) - actors.count(b"null") + len(ips) - ips.count(b"null")
    return (
        b"\\" not in block
        and block.count(b'"') == details.count(b'"') + 2 * quoted
        and (b" " not in details or b" " not in b"".join(details.split(b'"')[1::2]))
    )


def _hashes_match(heads: list[bytes], tails: list[bytes], hashes: list[bytes]) -> bool:
    """Whether every event's canonical bytes hash to its stored hash, in a few C-level passes.

    Base64 of a digest followed by a zero byte (33 bytes) is 44 characters:
    the digest's 43 unpadded ones, then "A". So one encoding of all digests
    so joined equals the stored hashes joined by "A", provided each stored
    hash has exactly 43 characters.
    """
    canonical = map(b"".join, zip(heads, tails, repeat(_VERSION_END)))
    digests = b"\0".join(map(_digest_of, map(hashlib.sha256, canonical))) + b"\0"
    encoded = binascii.b2a_base64(digests, newline=False).translate(_URL_SAFE)
    return encoded == b"A".join(hashes) + b"A" and set(map(len, hashes)) == {_DIGEST_CHARS}


def _hash_text(data: bytes) -> bytes:
    return binascii.b2a_base64(hashlib.sha256(data).digest(), newline=False)[:_DIGEST_CHARS].translate(_URL_SAFE)


def _canonical_details(text: bytes) -> bytes:
    return canonical_json(json.loads(text)).encode("ascii")


class CopySegmentWriter:
    """write_segment over COPY text rows of RAW_COLUMNS: the same output, byte for byte.

    Feed it the COPY stream with write() in pieces of any size; then finish().
    Every event is re-hashed: SHA-256 over the canonical bytes rendered from
    its row must equal the stored hash, and those very bytes (plus the hash
    and the type) become its JSONL line, so what ships is exactly what was
    hashed. Sequence and link are checked against the previous event.

    Only when rendering by quoting alone is exact for every value
    (_quoting_suffices) and every hash matches is a block taken whole. Else
    each row is tried alone with an exact per-row rendering (json for
    `details`); a row that still does not match (an escaped or non-canonical
    value, or tampering), breaks the sequence or the link, or that a signed
    checkpoint covers goes through the ordinary per-record path
    (`fetch_record` reads it through the ORM) and the ChainVerifier, which
    reports any problem exactly as write_segment does. The ORM cannot run while
    the connection is busy with a COPY, so inside `copying()` such a row and
    all rows after it wait until the COPY has ended.
    """

    def __init__(
        self,
        *,
        jsonl: BinaryIO,
        csv_sink: BinaryIO | None,
        header: Mapping[str, Any],
        start_sequence: int,
        start_prev_hash: str,
        checkpoints: list[Checkpoint],
        filters: Filters,
        signer: Signer,
        fetch_record: Callable[[int], Mapping[str, Any]],
    ) -> None:
        self._out, self._csv, self._verifier = open_segment(
            jsonl, csv_sink, header, start_sequence, start_prev_hash, checkpoints, filters, signer
        )
        self._signer = signer
        self._filters = filters
        self._fetch_record = fetch_record
        chain = json.dumps(str(header["chain"]), ensure_ascii=True).encode("ascii")
        self._head = _HEAD.replace(b'"chain":%s', b'"chain":' + chain.replace(b"%", b"%%"))
        # Events at a checkpoint and right after it (the audit.checkpoint_signed event that
        # recorded it) go through the ChainVerifier, which checks both.
        self._checkpoints = sorted({s for c in checkpoints for s in (c.sequence, c.sequence + 1)})
        # CSV rows and filters need the decoded record of every event.
        self._decode = self._csv is not None or bool(filters.as_dict())
        self._stats = SegmentStats()
        self._counts: Counter[tuple[bytes, bytes, bytes]] = Counter()
        self._expected, self._prev = start_sequence, start_prev_hash.encode()
        self._unsynced = 0  # events verified here that the ChainVerifier has not been told about
        self._last_hash = b""
        self._partial = b""  # an incomplete last line
        self._deferred: list[bytes] = []  # complete rows waiting for the end of the COPY
        self._fetch_allowed = True
        self._blocks = BlockWriter(self._out)
        self.processed = 0

    # Feeding ----------------------------------------------------------------

    def write(self, data: bytes) -> int:
        if self._partial:
            data = self._partial + data
        cut = data.rfind(b"\n") + 1
        self._partial = data[cut:]
        if cut:
            if self._deferred:
                self._deferred.append(data[:cut])
            else:
                self._block(data[:cut])
        return len(data)

    @contextmanager
    def copying(self) -> Iterator[None]:
        """Around one COPY on the connection that `fetch_record` uses."""
        self._fetch_allowed = False
        try:
            yield
        finally:
            self._fetch_allowed = True
        if self._partial:
            raise CopyFormatError("the COPY stream ended inside a row")
        deferred, self._deferred = self._deferred, []
        for block in deferred:
            self._block(block)

    # Blocks -----------------------------------------------------------------

    def _block(self, block: bytes) -> None:
        fields = block.replace(b"\n", b"\t").split(b"\t")
        fields.pop()  # after the last newline
        # COPY escapes tabs and newlines inside values, so every row has
        # exactly the SELECT's columns; this only catches a wrong SELECT.
        if len(fields) % _WIDTH:
            raise CopyFormatError("a COPY row does not have the export's columns")
        columns = [fields[i::_WIDTH] for i in range(_WIDTH)]
        rendered = self._render(block, columns)
        if rendered is not None and rendered[2] and not self._decode and self._continues(columns):
            self._take_whole(columns, rendered[0], rendered[1])
        else:
            self._one_by_one(block, fields, columns, rendered)

    def _render(self, block: bytes, columns: list[list[bytes]]) -> _Rendered | None:
        """Every row's head and tail by quoting alone, and whether all of them hash to the stored hashes.

        None when quoting alone would not be exact for some value of the block.
        """
        details = b"\t".join(columns[_DETAILS])
        if not _quoting_suffices(block, columns, details):
            return None
        if b" " in details:  # jsonb's rendering: compact its separators
            compact = details.replace(b": ", b":").replace(b", ", b",").split(b"\t")
        else:
            compact = columns[_DETAILS]
        actors, ips = columns[_ACTOR], columns[_IP]  # already JSON (select_list)
        heads = list(map(self._head.__mod__, zip(columns[_ACTION], columns[_ROLE], actors, compact, strict=True)))
        rest = (columns[i] for i in (_OUTCOME, _PREV, _PUBLIC_ID, _REQUEST, _SEQUENCE))
        tails = list(
            map(
                _TAIL.__mod__,
                zip(columns[_TIME], *rest, ips, columns[_TARGET], columns[_TYPE], strict=True),
            )
        )
        return heads, tails, _hashes_match(heads, tails, columns[_HASH])

    def _continues(self, columns: list[list[bytes]]) -> bool:
        """The block's sequences follow on, each event links to the one before, and no checkpoint falls in it."""
        sequences, prevs, hashes = columns[_SEQUENCE], columns[_PREV], columns[_HASH]
        start, stop = self._expected, self._expected + len(hashes)
        at = bisect.bisect_left(self._checkpoints, start)
        return (
            prevs[0] == self._prev
            and prevs[1:] == hashes[:-1]
            and sequences == list(map(b"%d".__mod__, range(start, stop)))
            and not (at < len(self._checkpoints) and self._checkpoints[at] < stop)
        )

    def _take_whole(self, columns: list[list[bytes]], heads: list[bytes], tails: list[bytes]) -> None:
        hashes, count = columns[_HASH], len(heads)
        parts: list[bytes] = [b"", _HASH_OPEN, b"", _QUOTE, b"", _TYPE_END] * count
        parts[0::6], parts[2::6], parts[4::6] = heads, hashes, tails
        self._write(b"".join(parts))
        self._counts.update(zip(columns[_ACTION], columns[_OUTCOME], columns[_ROLE], strict=True))
        self._stats.events += count
        self._note(int(columns[_SEQUENCE][0]), count)
        self._expected += count
        self._prev = self._last_hash = hashes[-1]
        self._unsynced += count

    def _one_by_one(
        self, block: bytes, fields: list[bytes], columns: list[list[bytes]], rendered: _Rendered | None
    ) -> None:
        parts: list[bytes] = []
        for i, stored in enumerate(columns[_HASH]):
            sequence = int(columns[_SEQUENCE][i])
            line = self._line(fields[i * _WIDTH : (i + 1) * _WIDTH], stored, rendered, i)
            if line is not None and sequence == self._expected and columns[_PREV][i] == self._prev:
                if not self._checkpoint_at(sequence):
                    self._expected, self._prev = sequence + 1, stored
                    self._unsynced += 1
                    if self._decode:
                        record = json.loads(line)
                        del record["type"]
                        self._emit(record, parts, line)
                    else:
                        parts.append(line)
                        self._stats.events += 1
                        self._counts[(columns[_ACTION][i], columns[_OUTCOME][i], columns[_ROLE][i])] += 1
                    self._note(sequence, 1)
                    self._last_hash = stored
                    continue
            if line is None and not self._fetch_allowed:
                self._write(b"".join(parts))
                self._deferred.append(b"\n".join(block.split(b"\n")[i:]))
                return
            self._through_verifier(sequence, line, parts)
        self._write(b"".join(parts))

    def _line(self, row: list[bytes], stored: bytes, rendered: _Rendered | None, i: int) -> bytes | None:
        """The row's JSONL line when its canonical rendering hashes to the stored hash; None otherwise."""
        if rendered is not None:
            head, tail, all_match = rendered[0][i], rendered[1][i], rendered[2]
            if all_match or _hash_text(head + tail + _VERSION_END) == stored:
                return head + _HASH_OPEN + stored + _QUOTE + tail + _TYPE_END
        exact = self._exact_parts(row)
        if exact is None or _hash_text(exact[0] + exact[1] + _VERSION_END) != stored:
            return None
        return exact[0] + _HASH_OPEN + stored + _QUOTE + exact[1] + _TYPE_END

    def _exact_parts(self, row: list[bytes]) -> tuple[bytes, bytes] | None:
        """One row's canonical head and tail, exact for any value COPY did not escape; None if it did."""
        for i, value in enumerate(row):
            if b"\\" in value or (b'"' in value and i not in (_DETAILS, _ACTOR, _IP)):
                return None
        if b"\\" in row[_DETAILS]:
            return None
        try:
            details = _canonical_details(row[_DETAILS])
        except (ValueError, RecursionError):
            return None
        head = self._head % (row[_ACTION], row[_ROLE], row[_ACTOR], details)
        tail = _TAIL % (row[_TIME], *row[_OUTCOME:_IP], row[_IP], row[_TARGET], row[_TYPE])
        return head, tail

    def _checkpoint_at(self, sequence: int) -> bool:
        at = bisect.bisect_left(self._checkpoints, sequence)
        return at < len(self._checkpoints) and self._checkpoints[at] == sequence

    # The record path ----------------------------------------------------------

    def _through_verifier(self, sequence: int, line: bytes | None, parts: list[bytes]) -> None:
        self._sync()
        record = dict(json.loads(line)) if line is not None else dict(self._fetch_record(sequence))
        record.pop("type", None)
        verifier = self._verifier
        verifier.add_event(record)
        self._expected, self._prev = verifier._next, verifier._prev_hash.encode()  # noqa: SLF001
        self._emit(record, parts)
        self._note(sequence, 1)
        self._last_hash = str(record["hash"]).encode()

    def _sync(self) -> None:
        # Bring the ChainVerifier up to date with the events verified here
        # (the same bookkeeping as its _after() for an event without checkpoint).
        if self._unsynced:
            result, verifier = self._verifier.result, self._verifier
            if result.first_sequence is None:
                result.first_sequence = self._expected - self._unsynced
            result.events_checked += self._unsynced
            result.last_sequence, result.last_hash = self._expected - 1, self._prev.decode()
            verifier._next, verifier._prev_hash = self._expected, self._prev.decode()  # noqa: SLF001
            self._unsynced = 0

    def _emit(self, record: Mapping[str, Any], parts: list[bytes], line: bytes | None = None) -> None:
        # The ordinary path, as in write_segment. `line`, when given, is the
        # verified canonical line `record` was decoded from: dumps_line would
        # give back the same bytes, so it is reused.
        stats = self._stats
        if self._filters.matches(record):
            parts.append(line if line is not None else dumps_line({"type": "event", **record}))
            stats.events += 1
            action, outcome, role = (str(record[k]).encode() for k in ("action", "outcome", "actor_role"))
            self._counts[(action, outcome, role)] += 1
            if self._csv is not None:
                self._csv.writerow([csv_cell(record[c]) for c in CSV_COLUMNS])
        else:
            link = {"type": "link", "sequence": record["sequence"], "prev_hash": record["prev_hash"]}
            parts.append(dumps_line({**link, "hash": record["hash"]}))
            stats.links += 1

    def _note(self, first: int, count: int) -> None:
        if self._stats.first_sequence is None:
            self._stats.first_sequence = first
        self._stats.last_sequence = first + count - 1
        self.processed += count

    def _write(self, blob: bytes) -> None:
        if blob:
            self._blocks.write(blob)

    def finish(self) -> SegmentStats:
        if self._partial or self._deferred:
            raise CopyFormatError("finish() before the COPY stream was complete")
        self._blocks.close()
        self._sync()
        stats = self._stats
        for (action, outcome, role), n in self._counts.items():
            stats.by_action[action.decode()] += n
            stats.by_outcome[outcome.decode()] += n
            stats.by_role[role.decode() or "(none)"] += n
        stats.last_hash = self._last_hash.decode()
        stats.verification = self._verifier.finish()
        write_footer(self._out, stats, self._signer)
        return stats

    def abandon(self) -> None:
        """Stop the writer thread of an export that failed part-way (what it wrote is discarded)."""
        self._blocks.close(raise_failure=False)
