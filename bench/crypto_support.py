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


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
