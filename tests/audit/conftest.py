"""Audit test helpers: filling a chain, and tampering behind the app's back."""

from __future__ import annotations

import contextlib
import io
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from audit.chain import GENESIS, event_hash
from audit.exportformat import Filters, SegmentStats, write_segment
from audit.models import AuditChain, AuditEvent, AuditExport
from audit.recorder import audit_record
from audit.services import segments
from audit.services.archive import s3_client
from audit.services.exports import export_build, export_read_all
from audit.services.integrity import chain_events, checkpoints_of
from audit.signing import ProviderSigner, current_signer
from audit.verify import main as verify_main
from portal.models import Tenant
from portal.tenancy.context import tenant_scope
from security.crypto.providers import get_signing_provider


def segment_both_ways(
    chain: AuditChain,
    *,
    first: int = 1,
    last: int | None = None,
    filters: Filters | None = None,
    with_csv: bool = False,
) -> list[tuple[bytes, bytes, SegmentStats]]:
    """(jsonl, csv, stats) of events first..last (default: the chain's newest) written by
    write_chain_segment (the COPY path on PostgreSQL), then by the per-record write_segment."""
    if last is None:
        last = AuditChain.objects.get(pk=chain.pk).last_sequence
    start_prev = GENESIS if first == 1 else AuditEvent.objects.get(chain=chain, sequence=first).prev_hash
    outputs = []
    for fast in (True, False):
        jsonl, csv_out = io.BytesIO(), io.BytesIO()
        common: dict[str, Any] = {
            "jsonl": jsonl,
            "csv_sink": csv_out if with_csv else None,
            "header": {"chain": chain.key},
            "start_prev_hash": start_prev,
            "checkpoints": checkpoints_of(chain, first=first, last=last),
            "filters": filters or Filters(),
            "signer": current_signer(),
        }
        if fast:
            stats = segments.write_chain_segment(chain=chain, first=first, last=last, **common)
        else:
            stats = write_segment(records=chain_events(chain, first=first, last=last), start_sequence=first, **common)
        outputs.append((jsonl.getvalue(), csv_out.getvalue(), stats))
    return outputs


def rewrite_chain_from(sql: Callable[..., None], chain: AuditChain, first: int) -> str:
    """Edit event `first` and recompute every later hash and the head, as a forger who knows the
    algorithm (but not the signing key) would; `sql` runs behind the app's back. Returns the new head hash."""
    table = "audit_auditevent"
    sql(f"UPDATE {table} SET target_id = 'R-rewritten' WHERE chain_id = %s AND sequence = %s", [chain.pk, first])  # noqa: S608
    prev = GENESIS if first == 1 else AuditEvent.objects.get(chain=chain, sequence=first - 1).hash
    for record in list(chain_events(chain, first=first)):
        record["prev_hash"] = prev
        new_hash = event_hash(record)
        sql(
            f"UPDATE {table} SET prev_hash = %s, hash = %s WHERE chain_id = %s AND sequence = %s",  # noqa: S608
            [prev, new_hash, chain.pk, record["sequence"]],
        )
        prev = new_hash
    sql("UPDATE audit_auditchain SET last_hash = %s WHERE id = %s", [prev, chain.pk])
    return prev


def delete_checkpoints_from(sql: Callable[..., None], chain: AuditChain, first: int) -> None:
    """What an insider deletes so that no checkpoint row contradicts the forged chain."""
    rows = "SELECT id FROM audit_auditcheckpoint WHERE chain_id = %s AND sequence >= %s"
    sql(f"DELETE FROM audit_auditcheckpointanchor WHERE checkpoint_id IN ({rows})", [chain.pk, first])  # noqa: S608
    sql("DELETE FROM audit_auditcheckpoint WHERE chain_id = %s AND sequence >= %s", [chain.pk, first])


def cut_chain_at(sql: Callable[..., None], chain: AuditChain, first: int) -> None:
    """Delete events `first`… and rewind the head to the event before, as if they never happened."""
    rows = "SELECT id FROM audit_auditevent WHERE chain_id = %s AND sequence >= %s"
    sql(f"DELETE FROM audit_auditeventsubject WHERE event_id IN ({rows})", [chain.pk, first])  # noqa: S608
    sql("DELETE FROM audit_auditevent WHERE chain_id = %s AND sequence >= %s", [chain.pk, first])
    last = AuditEvent.objects.get(chain=chain, sequence=first - 1)
    sql(
        "UPDATE audit_auditchain SET last_sequence = %s, last_hash = %s, updated_at = %s WHERE id = %s",
        [last.sequence, last.hash, last.occurred_at, chain.pk],
    )


def export_now(tenant: Tenant) -> bytes:
    """An export built after the tampering, by the honest application, of the whole recent range."""
    now = datetime.now(tz=UTC)
    with tenant_scope(tenant):
        export = AuditExport.objects.create(
            tenant=tenant, date_from=now - timedelta(days=1), date_to=now + timedelta(days=1)
        )
        export_build(export=export)
        return export_read_all(export=export, kind="jsonl")


@pytest.fixture
def anchor_key_file(tmp_path: Path) -> str:
    """The provider's public signing key as a file, as an auditor pins it."""
    path = tmp_path / "audit-signing.pem"
    path.write_text(ProviderSigner(get_signing_provider()).public_key.pem())
    return str(path)


def run_verifier(tmp_path: Path, data: bytes, *args: str) -> tuple[int, str]:
    """`python -m audit.verify FILE *args` on `data`, in process: (exit code, what it printed)."""
    path = tmp_path / "export.jsonl"
    path.write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        code = verify_main([str(path), *args])
    finally:
        sys.stdout, sys.stderr = old
    return code, out.getvalue() + err.getvalue()


def fill(tenant: Tenant | None, count: int, *, action: str = "receipt.viewed", **kwargs: Any) -> list[AuditEvent]:
    return [
        audit_record(
            action=action,
            tenant=tenant,
            actor_role=kwargs.get("actor_role", "guest"),
            target_type=kwargs.get("target_type", "receipt"),
            target_id=kwargs.get("target_id", f"R-{i}"),
            details=kwargs.get("details", {"n": i}),
        )
        for i in range(count)
    ]


@contextlib.contextmanager
def behind_the_apps_back() -> Iterator[Callable[[str, list[Any] | None], None]]:
    """Run raw SQL as the database owner with the append-only triggers off.

    On PostgreSQL the tests connect as the owner (a superuser), who can
    disable user triggers; the ALTER is part of the test's transaction and is
    rolled back with it. SQLite has no triggers to disable.
    """
    tables = ("audit_auditevent", "audit_auditeventsubject", "audit_auditcheckpoint")
    postgres = connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        if postgres:
            # Settle deferred foreign-key checks first: ALTER TABLE refuses
            # to run while trigger events are pending.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            for table in tables:
                cursor.execute(f'ALTER TABLE "{table}" DISABLE TRIGGER USER')

        def run(sql: str, params: list[Any] | None = None) -> None:
            cursor.execute(sql, params or [])

        yield run
        if postgres:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            for table in tables:
                cursor.execute(f'ALTER TABLE "{table}" ENABLE TRIGGER USER')


@pytest.fixture
def tamper() -> Callable[[], Any]:
    return behind_the_apps_back


BUCKET = "settle-audit-archive-test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[str]:
    port = _free_port()
    binary = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1)  # noqa: S310 - loopback test server
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def archive_settings(settings, moto_s3, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings.SETTLE_AUDIT_ARCHIVE_ENDPOINT_URL = moto_s3
    settings.SETTLE_AUDIT_ARCHIVE_BUCKET = BUCKET
    settings.SETTLE_AUDIT_HOT_DAYS = 120
    client = s3_client()
    try:
        client.create_bucket(Bucket=BUCKET)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    return client
