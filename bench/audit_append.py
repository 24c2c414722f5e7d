"""Append rate: the chained recorder against a plain INSERT of the same row.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/audit_append.py [--events 3000]

Each append is its own transaction, as in the application (an act and its
event commit together). The plain INSERT writes the same columns into a copy
of the table without triggers, chain lock or hashing. Target: ratio >= 0.5.

django-auditlog (benchmark-only, never a project dependency) is compared too
when it is installed in a throw-away directory:

    .venv/bin/pip install --target /tmp/auditlog-deps django-auditlog

That directory goes at the END of sys.path, so only `auditlog` itself comes
from it (Django and the rest from the venv). Its append is one
LogEntry.objects.log_create() of an update to a registered model, one
transaction each. Without the directory that line is skipped and says so.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

from _audit_db import setup, teardown

AUDITLOG_DEPS = os.environ.get("AUDITLOG_DEPS", "/tmp/auditlog-deps")  # noqa: S108 - a throw-away benchmark directory


def _auditlog_available() -> bool:
    if not (Path(AUDITLOG_DEPS) / "auditlog").is_dir():
        return False
    sys.path.append(AUDITLOG_DEPS)
    return True


def _auditlog_rate(tenant: object, events: int) -> float:
    """Appends per second through django-auditlog's log_create, one transaction each."""
    from auditlog.models import LogEntry  # type: ignore[import-not-found]
    from auditlog.registry import auditlog  # type: ignore[import-not-found]
    from django.db import transaction

    auditlog.register(type(tenant))
    for n in range(50):
        with transaction.atomic():
            LogEntry.objects.log_create(tenant, action=LogEntry.Action.UPDATE, changes={"name": ["a", f"w{n}"]})
    started = time.perf_counter()
    for n in range(events):
        with transaction.atomic():
            LogEntry.objects.log_create(tenant, action=LogEntry.Action.UPDATE, changes={"name": ["a", f"R-{n}"]})
    return events / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=3000)
    args = parser.parse_args()
    with_auditlog = _auditlog_available()
    connection = setup("append", extra_apps=("auditlog",) if with_auditlog else ())
    old_name = connection.settings_dict["NAME"]
    try:
        from django.db import transaction
        from django.utils import timezone

        from audit.recorder import audit_record
        from portal.services import tenant_create

        tenant = tenant_create(slug="bench", name="Bench")
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE bench_plain (LIKE audit_auditevent INCLUDING ALL)")
        # Warm up both paths.
        for _ in range(50):
            with transaction.atomic():
                audit_record(
                    action="receipt.viewed", tenant=tenant, actor_role="guest", target_type="receipt", target_id="warm"
                )
        started = time.perf_counter()
        for n in range(args.events):
            with transaction.atomic():
                audit_record(
                    action="receipt.viewed",
                    tenant=tenant,
                    actor_role="guest",
                    target_type="receipt",
                    target_id=f"R-{n}",
                    details={"n": n},
                )
        chained = time.perf_counter() - started
        sql = (
            "INSERT INTO bench_plain (public_id, chain_id, sequence, tenant_id, occurred_at, actor_user_id, actor_role, action, "
            "target_type, target_id, outcome, source_ip, request_id, details, prev_hash, hash) "
            "VALUES (%s, 1, %s, %s, %s, NULL, 'guest', 'receipt.viewed', 'receipt', %s, 'success', NULL, '', %s, %s, %s)"
        )
        started = time.perf_counter()
        for n in range(args.events):
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    sql,
                    [
                        str(uuid.uuid4()),
                        n + 1,
                        tenant.pk,
                        timezone.now(),
                        f"R-{n}",
                        f'{{"n": {n}}}',
                        "0" * 64,
                        "f" * 64,
                    ],
                )
        plain = time.perf_counter() - started
        chained_rate, plain_rate = args.events / chained, args.events / plain
        print(f"events: {args.events} (one transaction each)")
        print(f"chained recorder: {chained_rate:,.0f} events/s ({chained * 1e6 / args.events:,.0f} us/event)")
        print(f"plain INSERT:     {plain_rate:,.0f} events/s ({plain * 1e6 / args.events:,.0f} us/event)")
        print(f"ratio chained/plain: {chained_rate / plain_rate:.2f} (target >= 0.5)")
        if with_auditlog:
            auditlog_rate = _auditlog_rate(tenant, args.events)
            print(f"django-auditlog:  {auditlog_rate:,.0f} events/s ({1e6 / auditlog_rate:,.0f} us/event)")
            print(f"ratio chained/django-auditlog: {chained_rate / auditlog_rate:.2f}")
        else:
            print(f"django-auditlog: not installed in {AUDITLOG_DEPS}; skipped (see the module docstring)")
    finally:
        teardown(connection, old_name)


if __name__ == "__main__":
    main()
