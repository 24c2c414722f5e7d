"""Append rate: the chained recorder against a plain INSERT of the same row.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/audit_append.py [--events 2000]

Each append is its own transaction, as in the application (an act and its
event commit together), on both sides. The plain INSERT writes the same
columns and values into a copy of the event table (same columns and indexes,
no triggers, no foreign keys) without chain lock, hashing or subject index.
Target: ratio >= 0.5.

The sides run interleaved: `--rounds` rounds of events/rounds appends per
side, the side that goes first rotating each round, so that a burst of load
from other processes on a shared machine falls on every side alike instead
of on whichever ran during it. The figures are totals over all rounds; the
per-round ratios (median, min-max) show how much the load moved.

django-auditlog (benchmark-only, never a project dependency) is compared too
when it is installed in a throw-away directory:

    .venv/bin/pip install --target /tmp/auditlog-deps django-auditlog

That directory goes at the END of sys.path, so only `auditlog` itself comes
from it (Django and the rest from the venv). Its append is one
LogEntry.objects.log_create() of an update to a registered model, one
transaction each. Without the directory that line is skipped and says so.

`--profile N` instead runs N chained appends under cProfile and prints where
the time goes (sorted by own time). `--outside-scope` appends outside any
tenant scope, as platform-host requests, sign-in signals and tasks do: the
recorder then enters the chain's scope itself (two more round trips).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import pstats
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _audit_db import setup, teardown

AUDITLOG_DEPS = os.environ.get("AUDITLOG_DEPS", "/tmp/auditlog-deps")  # noqa: S108 - a throw-away benchmark directory
WARM_UP = 50

# One append of `n`-th event; each side opens and commits its own transaction.
Append = Callable[[int], None]


def _auditlog_available() -> bool:
    if not (Path(AUDITLOG_DEPS) / "auditlog").is_dir():
        return False
    sys.path.append(AUDITLOG_DEPS)
    return True


def _chained_append(tenant: Any) -> Append:
    from django.db import transaction

    from audit.recorder import audit_record

    def append(n: int) -> None:
        with transaction.atomic():
            audit_record(
                action="receipt.viewed",
                tenant=tenant,
                actor_role="guest",
                target_type="receipt",
                target_id=f"R-{n}",
                details={"n": n},
            )

    return append


def _plain_append(connection: Any, tenant: Any) -> Append:
    """INSERT of the row the recorder writes, into a same-shaped table; no chain."""
    from django.db import transaction
    from django.utils import timezone

    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_plain (LIKE audit_auditevent INCLUDING ALL)")
    sql = (
        "INSERT INTO bench_plain (public_id, chain_id, sequence, tenant_id, occurred_at, actor_user_id, actor_role, "
        "action, target_type, target_id, outcome, source_ip, request_id, details, prev_hash, hash) "
        "VALUES (%s, 1, %s, %s, %s, NULL, 'guest', 'receipt.viewed', 'receipt', %s, 'success', NULL, '', %s, %s, %s)"
    )
    digest = "A" * 43  # the length of a real digest (unpadded base64url SHA-256)

    def append(n: int) -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                sql, [str(uuid.uuid4()), n, tenant.pk, timezone.now(), f"R-{n}", f'{{"n": {n}}}', digest, digest]
            )

    return append


def _auditlog_append(tenant: Any) -> Append:
    """An update of a registered model logged through django-auditlog's log_create."""
    from auditlog.models import LogEntry  # type: ignore[import-not-found]
    from auditlog.registry import auditlog  # type: ignore[import-not-found]
    from django.db import transaction

    auditlog.register(type(tenant))

    def append(n: int) -> None:
        with transaction.atomic():
            LogEntry.objects.log_create(tenant, action=LogEntry.Action.UPDATE, changes={"name": ["a", f"R-{n}"]})

    return append


def _interleaved(sides: dict[str, Append], events: int, rounds: int) -> dict[str, list[float]]:
    """Seconds each side spent in each round, sides rotating who goes first."""
    per_round = max(1, events // rounds)
    spent: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    counter = dict.fromkeys(sides, WARM_UP)
    for number in range(rounds):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            append, first = sides[name], counter[name]
            started = time.perf_counter()
            for n in range(first, first + per_round):
                append(n)
            spent[name].append(time.perf_counter() - started)
            counter[name] += per_round
    return spent


def _report(spent: dict[str, list[float]], events: int, rounds: int) -> None:
    per_round = max(1, events // rounds)
    total = per_round * rounds
    rates = {name: total / sum(seconds) for name, seconds in spent.items()}
    print(f"events: {total} per side (one transaction each), {rounds} interleaved rounds of {per_round}")
    labels = {"chained": "chained recorder", "plain": "plain INSERT", "auditlog": "django-auditlog"}
    for name, rate in rates.items():
        print(f"{labels[name] + ':':18s}{rate:7,.0f} events/s ({1e6 / rate:6,.0f} us/event)")
    for other, target in (("plain", " (target >= 0.5)"), ("auditlog", "")):
        if other not in spent:
            continue
        ratios = [theirs / ours for ours, theirs in zip(spent["chained"], spent[other], strict=True)]
        print(
            f"ratio chained/{labels[other]}: {rates['chained'] / rates[other]:.2f}{target}; "
            f"per round median {statistics.median(ratios):.2f}, {min(ratios):.2f}-{max(ratios):.2f}"
        )
    if "auditlog" not in spent:
        print(f"django-auditlog: not installed in {AUDITLOG_DEPS}; skipped (see the module docstring)")


def _profile(append: Append, count: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for n in range(WARM_UP, WARM_UP + count):
        append(n)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000, help="appends per side")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds the appends are split into")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="profile N chained appends instead")
    parser.add_argument(
        "--outside-scope", action="store_true", help="append outside any tenant scope (the recorder enters one)"
    )
    args = parser.parse_args()
    with_auditlog = _auditlog_available() and not args.profile
    connection = setup("append", extra_apps=("auditlog",) if with_auditlog else ())
    old_name = connection.settings_dict["NAME"]
    stack = contextlib.ExitStack()
    try:
        from portal.services import tenant_create
        from portal.tenancy.context import tenant_scope

        tenant = tenant_create(slug="bench", name="Bench")
        # Inside the clinic's scope, as every clinic request records its
        # events (outside one, the recorder enters the chain's scope itself:
        # two more round trips per event).
        if not args.outside_scope:
            stack.enter_context(tenant_scope(tenant))
        sides = {"chained": _chained_append(tenant), "plain": _plain_append(connection, tenant)}
        if with_auditlog:
            sides["auditlog"] = _auditlog_append(tenant)
        for append in sides.values():
            for n in range(WARM_UP):
                append(n)
        if args.profile:
            _profile(sides["chained"], args.profile)
            return
        _report(_interleaved(sides, args.events, args.rounds), args.events, args.rounds)
    finally:
        stack.close()
        teardown(connection, old_name)


if __name__ == "__main__":
    main()
