"""One chain segment into an export file: COPY on PostgreSQL, the ORM elsewhere.

write_chain_segment is what export_build (audit.services.exports) and the
export benchmark (bench/audit_export.py) call. On PostgreSQL the segment's
rows come as COPY text, a chunk at a time, and audit.exportcopy renders,
re-hashes and verifies them; elsewhere (SQLite in development and tests)
records come through the ORM into audit.exportformat.write_segment. Both
write the same bytes (tests/audit/test_export_copy.py).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection
from psycopg2.extensions import TRANSACTION_STATUS_INERROR

from audit.exportcopy import CopySegmentWriter, select_list
from audit.exportformat import Filters, SegmentStats, write_segment
from audit.models import AuditChain, AuditEvent
from audit.services.integrity import EVENT_COLUMNS, chain_events, row_record
from audit.signing import Signer

# Rows per COPY statement. Between statements the connection is free for the
# record path (rows the fast path cannot prove) and for progress updates; a
# statement's rows are all that may wait in memory for the record path.
COPY_CHUNK = 50_000
# psycopg2 hands each COPY row to a write() call; a BufferedWriter (C) gathers
# them so that Python sees blocks of this size instead.
COPY_BLOCK = 256 * 1024


class _BlockSink(io.RawIOBase):
    """The raw end of the BufferedWriter that psycopg2 writes COPY rows to."""

    def __init__(self, segment: CopySegmentWriter) -> None:
        self._segment = segment

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        # `data` is a view of the buffer, valid only during this call.
        self._segment.write(bytes(data))
        return len(data)


def chunk_select() -> str:
    """The SELECT of one COPY chunk: the raw columns of a chain's events in [%s, %s), in sequence order."""
    columns = select_list(connection.ops.quote_name)
    table = connection.ops.quote_name(AuditEvent._meta.db_table)
    return (
        f"SELECT {columns} FROM {table} "  # noqa: S608  # nosec B608: fixed names; values are bound parameters
        "WHERE chain_id = %s AND sequence >= %s AND sequence < %s ORDER BY sequence"
    )


def copy_segment_rows(
    segment: CopySegmentWriter,
    chain: AuditChain,
    *,
    first: int,
    last: int,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Stream events first..last of `chain` into `segment` as COPY text (PostgreSQL only).

    The same `COPY (SELECT <columns> … ORDER BY sequence) TO STDOUT` as a plain
    dump of the table, one per COPY_CHUNK sequences (an index range scan), on
    the Django connection, so it runs in the caller's transaction and tenant
    scope (the row-level security setting). The server fills the socket while
    Python renders the previous block, and the segment's writer thread hashes
    and encrypts the block before, so both CPUs stay busy.
    `progress(events done)` is called after each statement.
    """
    select = chunk_select()
    with connection.cursor() as cursor, streaming_in_index_order(cursor):
        raw = cursor.cursor  # psycopg2's own cursor: Django's wrapper has no copy_expert
        for start in range(first, last + 1, COPY_CHUNK):
            query = raw.mogrify(select, (chain.pk, start, min(start + COPY_CHUNK, last + 1))).decode()
            with segment.copying(), io.BufferedWriter(_BlockSink(segment), buffer_size=COPY_BLOCK) as rows:
                raw.copy_expert(f"COPY ({query}) TO STDOUT", rows)
            if progress is not None:
                progress(segment.processed)


# A chunk's rows must stream in (chain, sequence) index order. For a chunk of
# COPY_CHUNK rows PostgreSQL's planner prefers a bitmap scan and a sort, and a
# sort sends nothing until the whole chunk is sorted (tens of milliseconds,
# spilled to disk), while Python, done with the previous chunk, waits. With
# these off for the export's statements, the index scan streams from its first
# row (bench/audit_export.py: 3.8 s against 3.2 s for 1,000,000 events).
_STREAMING_SETTINGS = {"enable_sort": "off", "enable_bitmapscan": "off"}


@contextmanager
def streaming_in_index_order(cursor: Any) -> Iterator[None]:
    """Planner settings for the export's COPY statements; the session's own values are put back after."""
    previous = {}
    for name, value in _STREAMING_SETTINGS.items():
        cursor.execute("SELECT current_setting(%s), set_config(%s, %s, false)", [name, name, value])
        previous[name] = cursor.fetchone()[0]
    try:
        yield
    finally:
        # After a failed statement in a transaction nothing more can run; its
        # rollback puts the session's values back by itself.
        if cursor.cursor.connection.get_transaction_status() != TRANSACTION_STATUS_INERROR:
            for name, value in previous.items():
                cursor.execute("SELECT set_config(%s, %s, false)", [name, value])


def _record_at(chain: AuditChain, sequence: int) -> dict[str, Any]:
    row = AuditEvent.objects.filter(chain=chain, sequence=sequence).values_list(*EVENT_COLUMNS).get()
    return row_record(chain.key, row)


def write_chain_segment(
    *,
    chain: AuditChain,
    first: int,
    last: int,
    jsonl: Any,
    csv_sink: Any,
    header: dict[str, Any],
    start_prev_hash: str,
    checkpoints: list[Any],
    filters: Filters,
    signer: Signer,
    progress: Callable[[int], None] | None = None,
    progress_every: int = 2000,
) -> SegmentStats:
    """Stream events first..last of `chain` into an export (write_segment's output, byte for byte).

    On PostgreSQL the raw columns come by COPY and Python renders the
    canonical JSON a block at a time (fast path; progress is then reported
    after each COPY_CHUNK events); elsewhere (SQLite in development and tests)
    records come through the ORM. Either way every event is re-hashed and the
    chain re-verified.
    """
    if str(header["chain"]) != chain.key:
        raise ValueError("the header must name the chain being exported")
    if connection.vendor != "postgresql":
        return write_segment(
            jsonl=jsonl,
            csv_sink=csv_sink,
            header=header,
            records=chain_events(chain, first=first, last=last),
            start_sequence=first,
            start_prev_hash=start_prev_hash,
            checkpoints=checkpoints,
            filters=filters,
            signer=signer,
            progress=progress,
            progress_every=progress_every,
        )
    segment = CopySegmentWriter(
        jsonl=jsonl,
        csv_sink=csv_sink,
        header=header,
        start_sequence=first,
        start_prev_hash=start_prev_hash,
        checkpoints=checkpoints,
        filters=filters,
        signer=signer,
        fetch_record=lambda sequence: _record_at(chain, sequence),
    )
    try:
        copy_segment_rows(segment, chain, first=first, last=last, progress=progress)
        stats = segment.finish()
    except BaseException:
        segment.abandon()
        raise
    if progress is not None:
        progress(segment.processed)
    return stats
