"""Export of many events: the streaming JSONL export against PostgreSQL's COPY, and peak memory.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/audit_export.py [--events 1000000] [--repeat 3]

Fills one chain with N hashed events (through COPY, fast), then times
1. the export path (audit.services.segments.write_chain_segment, the function export_build uses:
   on PostgreSQL a COPY of the raw columns, from which exportcopy.CopySegmentWriter
   renders each event's canonical JSON, re-hashes and verifies every event, writes the
   JSONL lines, hashes the file and AES-GCM encrypts it; no CSV, as before),
2. `COPY (SELECT the same columns ORDER BY sequence) TO STDOUT` into a null sink,
each in a fresh child process; reported: wall time, the child's own peak RSS
(VmHWM), and the CPU seconds of the child and of its PostgreSQL backend (the
machine is shared, so CPU seconds say more than wall time under load).
Targets: export time >= 0.5x COPY's speed; peak RSS < 200 MB.
With BENCH_KEEPDB=1 the database is kept and a later run with the same --events reuses it.

`--details mixed` fills events whose details have the shapes the product
records (one key; a list of patient ids; payment amounts; role changes;
checkpoint references) instead of one key each. PostgreSQL's jsonb keeps
object keys ordered by length, the canonical JSON by name, so multi-key
details are the case the export has to re-order. Its database is
test_bench_export_mixed.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _audit_db import setup, teardown

DB_NAME = "test_bench_export"

# Details as the product records them (billing, security, audit callers).
_MIXED_DETAILS = (
    lambda n: {"n": n},
    lambda n: {"patients": [f"p-{n}", f"p-{n + 1}", f"p-{n + 2}"]},
    lambda n: {"source": "checkout", "amount_minor": n, "currency": "usd", "attempt": 1},
    lambda n: {"from_role": "front_desk", "to_role": "billing_manager"},
    lambda n: {"sequence": n, "key_id": "local-ed25519-1"},
)


class _RowStream(io.RawIOBase):
    """Tab-separated rows for COPY FROM, generated lazily (constant memory)."""

    def __init__(self, chain_key: str, chain_id: int, tenant_id: int, count: int, *, mixed: bool = False) -> None:
        from audit.chain import GENESIS

        self.chain_key, self.chain_id, self.tenant_id, self.count = chain_key, chain_id, tenant_id, count
        self.mixed = mixed
        self.n = 0
        self.prev = GENESIS
        self.start = datetime(2026, 1, 1, tzinfo=UTC)
        self.buffer = b""
        self.last_hash = GENESIS

    def readable(self) -> bool:
        return True

    def _row(self) -> bytes:
        from audit.chain import canonical_json, event_hash, format_time

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
            "details": _MIXED_DETAILS[self.n % len(_MIXED_DETAILS)](self.n) if self.mixed else {"n": self.n},
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
            canonical_json(record["details"]),  # as the recorder stores it (audit.fields)
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


def fill(events: int, *, mixed: bool) -> bool:
    """Fill the chain; False when a kept database (BENCH_KEEPDB=1) already holds exactly `events`."""
    from django.db import connection

    from audit.models import AuditChain
    from portal.services import tenant_create

    kept = AuditChain.objects.filter(tenant__slug="bench-export").first()
    if kept is not None:
        if kept.last_sequence != events:
            sys.exit(f"the kept database holds {kept.last_sequence:,} events; drop test_bench_export first")
        return False
    tenant = tenant_create(slug="bench-export", name="Bench export")
    stream = _RowStream(str(tenant.public_id), 0, tenant.pk, events, mixed=mixed)
    chain = AuditChain.objects.create(key=str(tenant.public_id), tenant=tenant, last_hash=stream.prev)
    stream.chain_id = chain.pk
    columns = (
        "public_id, chain_id, sequence, tenant_id, occurred_at, actor_user_id, actor_role, action, target_type, "
        "target_id, outcome, source_ip, request_id, details, prev_hash, hash"
    )
    with connection.cursor() as cursor:
        cursor.cursor.copy_expert(f"COPY audit_auditevent ({columns}) FROM STDIN", io.BufferedReader(stream, 1 << 16))
    AuditChain.objects.filter(pk=chain.pk).update(last_sequence=events, last_hash=stream.last_hash)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE audit_auditevent")
    return True


def phase(name: str) -> None:
    """Run one measured phase in this (child) process and print 'seconds rss_mb bytes'."""
    import django

    django.setup()
    from django.db import connection

    connection.settings_dict["NAME"] = os.environ.get("BENCH_EXPORT_DB", DB_NAME)
    from audit.chain import GENESIS
    from audit.crypto import EncryptingWriter, LocalKeyWrapper
    from audit.exportformat import Filters
    from audit.models import AuditChain
    from audit.services.integrity import EVENT_COLUMNS, checkpoints_of
    from audit.services.segments import write_chain_segment
    from audit.signing import current_signer

    chain = AuditChain.objects.get(tenant__slug="bench-export")
    sink = _Null()
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    server_before, client_before = _server_cpu(backend), _client_cpu()
    started = time.perf_counter()
    if name == "export":
        encrypted = EncryptingWriter(sink, context={"bench": "1"}, wrapper=LocalKeyWrapper(b"k" * 32))  # type: ignore[arg-type]
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
    client = _client_cpu() - client_before
    server = _server_cpu(backend) - server_before
    print(f"{elapsed:.3f} {_peak_rss_mb():.1f} {sink.bytes} {client:.3f} {server:.3f}")


def _peak_rss_mb() -> float:
    """This program's own peak RSS (VmHWM).

    ru_maxrss would also count the parent's RSS at fork, which Linux carries
    across exec (large when a kept database was serialised at set-up).
    """
    try:
        with Path("/proc/self/status").open() as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _server_cpu(pid: int) -> float:
    """CPU seconds of the PostgreSQL backend serving this connection (same machine; negative if unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return -1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--phase", choices=["export", "copy"])
    parser.add_argument("--repeat", type=int, default=1, help="measure COPY then export this many times")
    parser.add_argument(
        "--details", choices=["one-key", "mixed"], default="one-key", help="what the events' details hold"
    )
    args = parser.parse_args()
    if args.phase:
        phase(args.phase)
        return
    mixed = args.details == "mixed"
    connection = setup("export_mixed" if mixed else "export")
    old_name = connection.settings_dict["NAME"]
    try:
        started = time.perf_counter()
        if fill(args.events, mixed=mixed):
            print(f"filled {args.events:,} chained events in {time.perf_counter() - started:.1f} s")
        else:
            print(f"reusing the kept database's {args.events:,} chained events (BENCH_KEEPDB=1)")
        env = {**os.environ, "BENCH_CHILD": "1", "BENCH_EXPORT_DB": connection.settings_dict["NAME"]}
        ratios = []
        for run in range(args.repeat):
            if args.repeat > 1:
                print(f"run {run + 1} of {args.repeat}:")
            results = {}
            for name in ("copy", "export"):
                out = subprocess.run(  # noqa: S603 - this script re-running itself
                    [sys.executable, __file__, "--phase", name], env=env, capture_output=True, text=True, check=True
                )
                seconds, rss, size, client, server = out.stdout.split()[-5:]
                results[name] = (float(seconds), float(rss), int(size))
                cpu = f"cpu client {float(client):.2f} s, server {float(server):.2f} s" if float(server) >= 0 else ""
                print(
                    f"{name:>6}: {float(seconds):7.2f} s  {args.events / float(seconds):>10,.0f} events/s  "
                    f"peak RSS {float(rss):.1f} MB  {int(size) / 1e6:,.0f} MB out  {cpu}"
                )
            ratios.append(results["copy"][0] / results["export"][0])
            print(
                f"export speed / COPY speed: {ratios[-1]:.2f} (target >= 0.5); "
                f"export peak RSS {results['export'][1]:.0f} MB (target < 200)"
            )
        if args.repeat > 1:
            print(
                f"median ratio of {args.repeat} runs: {statistics.median(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f})"
            )
    finally:
        teardown(connection, old_name)


if __name__ == "__main__":
    main()
