"""Which outside services the test suite can use, and how to tell.

Shared by tests/runner.py (which decides before pytest starts) and
tests/conftest.py (which skips, or under CI fails, the tests that need a
missing service when pytest is run directly).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
CHROMIUM_PATH = "/usr/bin/chromium"
ARTIFACTS_DIR = Path(__file__).resolve().parent.parent / "test-artifacts"

_TRUE = {"1", "true", "yes", "on"}


def ci_mode() -> bool:
    """CI=true: PostgreSQL, Redis and Chromium are required and nothing may be skipped."""
    return os.environ.get("CI", "").strip().lower() in _TRUE


def redacted(url: str) -> str:
    """The URL with any password replaced, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def is_postgres_url(url: str) -> bool:
    return urlsplit(url).scheme in {"postgres", "postgresql", "pgsql", "postgis"}


def postgres_problem(url: str, *, timeout: int = 3) -> str | None:
    """None when PostgreSQL at `url` answers SELECT 1, else why not."""
    import psycopg2

    try:
        connection = psycopg2.connect(url, connect_timeout=timeout)
    except psycopg2.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except psycopg2.Error as exc:
        return str(exc).strip() or type(exc).__name__
    finally:
        connection.close()
    return None


def redis_problem(url: str, *, timeout: float = 2.0) -> str | None:
    """None when Redis at `url` answers PING, else why not."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        return str(exc) or type(exc).__name__
    return None


def chromium_problem() -> str | None:
    """None when Debian's Chromium and Playwright are both there, else why not."""
    if not Path(CHROMIUM_PATH).is_file() or not os.access(CHROMIUM_PATH, os.X_OK):
        return f"{CHROMIUM_PATH} not found (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    return None


def redis_url_with_db(url: str, db: int) -> str:
    """The same Redis server, another logical database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


def redis_db_of(url: str) -> int:
    path = urlsplit(url).path.strip("/")
    return int(path) if path.isdigit() else 0
