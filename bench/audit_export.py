"""Export of many events: the streaming JSONL export against PostgreSQL's COPY, and peak memory.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/audit_export.py [--events 1000000]

Fills one chain with N hashed events (through COPY, fast), then times
1. the export path (audit.services.exports.write_chain_segment, the function export_build uses:
   on PostgreSQL the database pre-renders each event's canonical JSON, then
   exportformat.write_segment_rows re-hashes and verifies every event, writes the
   JSONL lines, hashes the file and AES-GCM encrypts it; no CSV, as before),
2. `COPY (SELECT the same columns ORDER BY sequence) TO STDOUT` into a null sink,
each in a fresh child process whose peak RSS (ru_maxrss) is reported.
Targets: export time >= 0.5x COPY's speed; peak RSS < 200 MB.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from _audit_db import setup, teardown

DB_NAME = "test_bench_export"


class _RowStream(io.RawIOBase):
    """Tab-separated rows for COPY FROM, generated lazily (constant memory)."""

    def __init__(self, chain_key: str, chain_id: int, tenant_id: int, count: int) -> None:
        from audit.chain import GENESIS

        self.chain_key, self.chain_id, self.tenant_id, self.count = chain_key, chain_id, tenant_id, count
        self.n = 0
        self.prev = GENESIS
        self.start = datetime(2026, 1, 1, tzinfo=UTC)
        self.buffer = b""
        self.last_hash = GENESIS

    def readable(self) -> bool:
        return True

    def _row(self) -> bytes:
        from audit.chain import event_hash, format_time

        self.n += 1
        record = {
            "chain": self.chain_key,
            "sequence": self.n,
            "public_id": str(uuid.uuid4()),
            "occurred_at": format_time(self.start + timedelta(milliseconds=self.n)),
            "actor_user_id": None,
            "actor_role": "guest",
            "action": "receipt.viewed",
            "target_type": "receipt",
            "target_id": f"R-{self.n}",
            "outcome": "success",
            "source_ip": "10.0.0.1",
            "request_id": "",
            "details": {"n": self.n},
            "prev_hash": self.prev,
        }
        digest = event_hash(record)
        self.prev = self.last_hash = digest
        fields: list[str] = [
            str(record["public_id"]),
            str(self.chain_id),
            str(self.n),
            str(self.tenant_id),
            str(record["occurred_at"]),
            "\\N",
            "guest",
            "receipt.viewed",
            "receipt",
            str(record["target_id"]),
            "success",
            "10.0.0.1",
            "",
            json.dumps(record["details"]),
            str(record["prev_hash"]),
            digest,
        ]
        return ("\t".join(fields) + "\n").encode()

    def readinto(self, target) -> int:  # type: ignore[no-untyped-def]
        while len(self.buffer) < len(target) and self.n < self.count:
            self.buffer += self._row()
        size = min(len(target), len(self.buffer))
        target[:size] = self.buffer[:size]
        self.buffer = self.buffer[size:]
        return size


class _Null:
    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes | str) -> int:
        self.bytes += len(data)
        return len(data)


def fill(events: int) -> None:
    from django.db import connection

    from audit.models import AuditChain
    from portal.services import tenant_create

    tenant = tenant_create(slug="bench-export", name="Bench export")
    stream = _RowStream(str(tenant.public_id), 0, tenant.pk, events)
    chain = AuditChain.objects.create(key=str(tenant.public_id), tenant=tenant, last_hash=stream.prev)
    stream.chain_id = chain.pk
    columns = (
        "public_id, chain_id, sequence, tenant_id, occurred_at, actor_user_id, actor_role, action, target_type, "
        "target_id, outcome, source_ip, request_id, details, prev_hash, hash"
    )
    with connection.cursor() as cursor:
        cursor.cursor.copy_expert(f"COPY audit_auditevent ({columns}) FROM STDIN", io.BufferedReader(stream, 1 << 16))
    AuditChain.objects.filter(pk=chain.pk).update(last_sequence=events, last_hash=stream.last_hash)


def phase(name: str) -> None:
    """Run one measured phase in this (child) process and print 'seconds rss_mb bytes'."""
    import django

    django.setup()
    from django.db import connection

    connection.settings_dict["NAME"] = DB_NAME
    from audit.chain import GENESIS
    from audit.crypto import EncryptingWriter, LocalKeyWrapper
    from audit.exportformat import Filters
    from audit.models import AuditChain
    from audit.services.exports import write_chain_segment
    from audit.services.integrity import EVENT_COLUMNS, checkpoints_of
    from audit.signing import current_signer

    chain = AuditChain.objects.get(tenant__slug="bench-export")
    sink = _Null()
    started = time.perf_counter()
    if name == "export":
        encrypted = EncryptingWriter(sink, context={"bench": "1"}, wrapper=LocalKeyWrapper(b"k" * 32))  # type: ignore[arg-type]
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = 0")
        stats = write_chain_segment(
            chain=chain,
            first=1,
            last=chain.last_sequence,
            jsonl=encrypted,
            csv_sink=None,
            header={"chain": chain.key},
            start_prev_hash=GENESIS,
            checkpoints=checkpoints_of(chain),
            filters=Filters(),
            signer=current_signer(),
        )
        encrypted.close()
        assert stats.verification is not None and stats.verification.ok
    else:
        columns = ", ".join(EVENT_COLUMNS)
        with connection.cursor() as cursor:
            cursor.cursor.copy_expert(
                f"COPY (SELECT {columns} FROM audit_auditevent WHERE chain_id = {chain.pk} ORDER BY sequence) TO STDOUT",  # noqa: S608 - fixed column names and an integer id
                sink,
            )
    elapsed = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{elapsed:.3f} {rss_mb:.1f} {sink.bytes}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--phase", choices=["export", "copy"])
    args = parser.parse_args()
    if args.phase:
        phase(args.phase)
        return
    connection = setup("export")
    old_name = connection.settings_dict["NAME"]
    try:
        started = time.perf_counter()
        fill(args.events)
        print(f"filled {args.events:,} chained events in {time.perf_counter() - started:.1f} s")
        env = {**os.environ, "BENCH_CHILD": "1"}
        results = {}
        for name in ("copy", "export"):
            out = subprocess.run(  # noqa: S603 - this script re-running itself
                [sys.executable, __file__, "--phase", name], env=env, capture_output=True, text=True, check=True
            )
            seconds, rss, size = out.stdout.split()[-3:]
            results[name] = (float(seconds), float(rss), int(size))
            print(
                f"{name:>6}: {float(seconds):7.2f} s  {args.events / float(seconds):>10,.0f} events/s  peak RSS {rss} MB  {int(size) / 1e6:,.0f} MB out"
            )
        ratio = results["copy"][0] / results["export"][0]
        print(
            f"export speed / COPY speed: {ratio:.2f} (target >= 0.5); export peak RSS {results['export'][1]:.0f} MB (target < 200)"
        )
    finally:
        teardown(connection, old_name)


if __name__ == "__main__":
    main()
