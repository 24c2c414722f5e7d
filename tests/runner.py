"""Run the test suite with the services this machine has.

    python -m tests.runner [pytest arguments]      (what `make test` runs)

- DATABASE_URL: used as given when set; when unset, PostgreSQL at
  postgres://postgres@127.0.0.1:5432/postgres if it answers, else SQLite.
  Set it empty (DATABASE_URL=) to force SQLite.
- REDIS_URL: used as given when set; when unset, redis://127.0.0.1:6379/15 if
  it answers, else none (tests marked `redis` are skipped). Set it empty to
  run without Redis.
- CI=true: PostgreSQL, Redis and Chromium are required. A missing one stops
  the run here with a message, and no test may be skipped.

Tests always run with SETTLE_ENV=test and Celery tasks eager; one test starts
a real worker against Redis. Each run gets its own PostgreSQL test database
(test_settle_<pid>), so runs in the same checkout do not trample each other.

The suite runs in one process. pytest-xdist (`make test PYTEST_ARGS="-n 2"`)
halves the wall time, but is not the default until every test is safe to run
beside another: tests that FLUSHDB the shared Redis cache (cache.clear()) or
hand the test database's name to a subprocess break under it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import urlsplit

from tests.services import (
    DEFAULT_POSTGRES_URL,
    DEFAULT_REDIS_URL,
    chromium_problem,
    ci_mode,
    is_postgres_url,
    postgres_problem,
    redacted,
    redis_problem,
)

EXIT_NO_TESTS = 5  # pytest's own code for "no tests ran"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class ServiceError(RuntimeError):
    pass


def _say(line: str = "") -> None:
    print(line, flush=True)


def choose_database(env: dict[str, str], *, ci: bool) -> str:
    """Set env["DATABASE_URL"] (or remove it for SQLite); return a description."""
    given = env.get("DATABASE_URL")
    if given is None:
        problem = postgres_problem(DEFAULT_POSTGRES_URL)
        if problem is None:
            env["DATABASE_URL"] = DEFAULT_POSTGRES_URL
            return f"PostgreSQL at {DEFAULT_POSTGRES_URL} (found on loopback)"
        if ci:
            raise ServiceError(
                f"CI=true needs PostgreSQL: DATABASE_URL is unset and {DEFAULT_POSTGRES_URL} "
                f"does not answer ({problem})"
            )
        return f"SQLite (PostgreSQL not reachable at {DEFAULT_POSTGRES_URL}: {problem})"
    if not given.strip():
        env.pop("DATABASE_URL", None)
        if ci:
            raise ServiceError("CI=true needs PostgreSQL, but DATABASE_URL is set empty")
        return "SQLite (DATABASE_URL set empty)"
    if not is_postgres_url(given):
        if ci:
            raise ServiceError(f"CI=true needs PostgreSQL, but DATABASE_URL is {redacted(given)}")
        return f"{redacted(given)} (from DATABASE_URL)"
    problem = postgres_problem(given)
    if problem is not None:
        raise ServiceError(f"DATABASE_URL={redacted(given)} does not answer: {problem}")
    return f"PostgreSQL at {redacted(given)} (from DATABASE_URL)"


def choose_redis(env: dict[str, str], *, ci: bool) -> str:
    """Set env["REDIS_URL"] (or remove it); return a description."""
    given = env.get("REDIS_URL")
    if given is None:
        problem = redis_problem(DEFAULT_REDIS_URL)
        if problem is None:
            env["REDIS_URL"] = DEFAULT_REDIS_URL
            return f"Redis at {DEFAULT_REDIS_URL} (found on loopback)"
        if ci:
            raise ServiceError(
                f"CI=true needs Redis: REDIS_URL is unset and {DEFAULT_REDIS_URL} does not answer ({problem})"
            )
        return f"none (Redis not reachable at {DEFAULT_REDIS_URL}: {problem}); tests marked redis are skipped"
    if not given.strip():
        env.pop("REDIS_URL", None)
        if ci:
            raise ServiceError("CI=true needs Redis, but REDIS_URL is set empty")
        return "none (REDIS_URL set empty); tests marked redis are skipped"
    problem = redis_problem(given)
    if problem is not None:
        raise ServiceError(f"REDIS_URL={redacted(given)} does not answer: {problem}")
    return f"Redis at {redacted(given)} (from REDIS_URL)"


def choose_browser(*, ci: bool) -> str:
    problem = chromium_problem()
    if problem is None:
        return "Chromium at /usr/bin/chromium through Playwright"
    if ci:
        raise ServiceError(f"CI=true needs the browser tests: {problem}")
    return f"none ({problem}); tests marked e2e are skipped"


def drop_stale_test_databases(url: str) -> list[str]:
    """Drop test_settle_<pid> databases left by runs on this machine that died.

    Only for a PostgreSQL on loopback, where the pid in the name is one of
    this machine's processes; a database whose process still runs is kept.
    """
    if urlsplit(url).hostname not in LOOPBACK:
        return []
    import psycopg2

    dropped: list[str] = []
    connection = psycopg2.connect(url, connect_timeout=3)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(r"SELECT datname FROM pg_database WHERE datname LIKE 'test\_settle\_%'")
            names = [row[0] for row in cursor.fetchall()]
            for name in names:
                pid_part = name.removeprefix("test_settle_").split("_", 1)[0]
                if not pid_part.isdigit() or _process_alive(int(pid_part)):
                    continue
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                dropped.append(name)
    except psycopg2.Error as exc:
        _say(f"  (could not tidy stale test databases: {exc})")
    finally:
        connection.close()
    return dropped


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str]) -> int:
    ci = ci_mode()
    env = dict(os.environ)
    env["SETTLE_ENV"] = "test"
    env["CELERY_TASK_ALWAYS_EAGER"] = "true"
    env.setdefault("SETTLE_TEST_RUN_ID", str(os.getpid()))
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")

    _say("Settle test suite")
    try:
        database = choose_database(env, ci=ci)
        redis_desc = choose_redis(env, ci=ci)
        browser = choose_browser(ci=ci)
    except ServiceError as exc:
        _say(f"ERROR: {exc}")
        _say("Start the service (see .ci/run) or point the variable at one, then run again.")
        return 2

    _say(f"  database : {database}")
    _say(f"  redis    : {redis_desc}")
    _say(f"  browser  : {browser}")
    _say("  celery   : tasks eager (CELERY_TASK_ALWAYS_EAGER=true); one redis test runs a real worker")
    if ci:
        _say("  mode     : CI=true: every service is required and a skipped test fails the run")
    else:
        _say("  mode     : local: tests whose service is missing are skipped and listed at the end")
    if "DATABASE_URL" in env and is_postgres_url(env["DATABASE_URL"]):
        for name in drop_stale_test_databases(env["DATABASE_URL"]):
            _say(f"  (dropped stale test database {name})")
    rule = "-" * 72
    _say(rule)

    command = [sys.executable, "-m", "pytest", *argv]
    process = subprocess.Popen(command, env=env)
    try:
        code = process.wait()
    except KeyboardInterrupt:
        # Ctrl-C reached pytest too; let it tear down (servers, databases) first.
        code = process.wait()

    _say(rule)
    if code == EXIT_NO_TESTS:
        _say("FAILED: pytest ran no tests (exit code 5); check the arguments and the test paths.")
    elif code == 0:
        _say("Test suite passed. Skipped tests, if any, are listed above with the reason.")
    else:
        _say(f"Test suite FAILED (pytest exit code {code}).")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
