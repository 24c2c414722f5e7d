"""Shared set-up for the crypto benchmarks: Django on a throw-away database, a fresh master key.

PostgreSQL when DATABASE_URL points at it (a database test_bench_<name> is
created and dropped); otherwise a temporary SQLite file.
"""

from __future__ import annotations

import base64
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("SETTLE_ENV", "test")
os.environ.setdefault("SETTLE_MASTER_KEY", base64.b64encode(secrets.token_bytes(32)).decode())


def setup(name: str) -> Any:
    """Django with a fresh, migrated database; returns the connection."""
    import django

    django.setup()
    from django.db import connection

    connection.settings_dict.setdefault("TEST", {})["NAME"] = f"test_bench_{name}"
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    return connection


def teardown(connection: Any, old_name: str | None = None) -> None:
    connection.creation.destroy_test_db(old_name or connection.settings_dict["NAME"], verbosity=0)


def best_of(repeats: int, run: Callable[[], Any]) -> float:
    """Median wall time of `repeats` runs, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@dataclass(frozen=True)
class Timing:
    """Median wall and CPU (this process) seconds of one contender's runs."""

    wall: float
    cpu: float


def interleaved(
    repeats: int, contenders: dict[str, Callable[[], Any]], *, statistic: str = "median"
) -> dict[str, Timing]:
    """Run the contenders in turn, `repeats` rounds, and take each one's median (or min).

    Round-robin rather than one block each: on a shared machine the load
    changes within seconds, and blocks would hand that change to whichever
    contender ran during it. CPU time (time.process_time) is shown beside
    wall time: other processes hardly move it, but it leaves out the database
    server's own work. The minimum is the figure least moved by other
    processes (each contender's luckiest round); the median is the default.
    """
    pick: Callable[[list[float]], float] = statistics.median if statistic == "median" else min
    walls: dict[str, list[float]] = {name: [] for name in contenders}
    cpus: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            run()
            cpus[name].append(time.process_time() - cpu_start)
            walls[name].append(time.perf_counter() - wall_start)
    return {name: Timing(pick(walls[name]), pick(cpus[name])) for name in contenders}


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
