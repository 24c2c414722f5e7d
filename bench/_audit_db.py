"""Shared set-up for the audit benchmarks: Django on a throw-away PostgreSQL database."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("SETTLE_ENV", "test")


def setup(name: str, extra_apps: tuple[str, ...] = ()) -> Any:
    """Django with a fresh database `test_bench_<name>` (migrated); returns the connection.

    `extra_apps` are added to INSTALLED_APPS for this process only (benchmark-only
    comparisons such as django-auditlog).
    """
    import django

    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("set DATABASE_URL=postgres://... (the benchmarks compare against PostgreSQL's own INSERT/COPY)")
    if extra_apps:
        from django.conf import settings

        settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, *extra_apps]
    django.setup()
    from django.db import connection

    connection.settings_dict.setdefault("TEST", {})["NAME"] = f"test_bench_{name}"
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=os.environ.get("BENCH_KEEPDB") == "1")
    return connection


def teardown(connection: Any, old_name: str | None = None) -> None:
    if os.environ.get("BENCH_KEEPDB") == "1":
        return
    connection.creation.destroy_test_db(old_name or connection.settings_dict["NAME"], verbosity=0)
