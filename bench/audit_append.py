"""Append rate: the chained recorder against a plain INSERT of the same row.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/audit_append.py [--events 3000]

Each append is its own transaction, as in the application (an act and its
event commit together). The plain INSERT writes the same columns into a copy
of the table without triggers, chain lock or hashing. Target: ratio >= 0.5.
"""

from __future__ import annotations

import argparse
import time
import uuid

from _audit_db import setup, teardown


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=3000)
    args = parser.parse_args()
    connection = setup("append")
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
    finally:
        teardown(connection, old_name)


if __name__ == "__main__":
    main()
