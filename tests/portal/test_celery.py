"""Celery: eager in tests, and a real worker on Redis completes a task."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from celery import Celery
from django.conf import settings
from django.db import connection

from portal.celery import app as portal_app
from portal.tasks import health_probe
from tests.services import redis_db_of, redis_url_with_db

ROOT = Path(__file__).resolve().parents[2]
WORKER_START_TIMEOUT = 60  # seconds for a cold worker to start and answer


def test_tasks_run_eagerly_in_tests(db):
    assert portal_app.conf.task_always_eager is True
    result = health_probe.delay(41)
    assert result.get(timeout=5) == {"echo": 41, "database": True}


def test_celery_is_hardened():
    conf = portal_app.conf
    assert conf.task_serializer == "json"
    assert conf.result_serializer == "json"
    assert list(conf.accept_content) == ["json"]
    assert conf.task_time_limit and conf.task_soft_time_limit
    assert conf.task_soft_time_limit < conf.task_time_limit


def _worker_redis_url() -> str:
    # A logical database of its own: other tests (and other runs) FLUSHDB the
    # cache database, which would take the queued message or result with it.
    base = settings.REDIS_URL
    assert base, "the redis marker guarantees REDIS_URL"
    return redis_url_with_db(base, 14 if redis_db_of(base) != 14 else 13)


def _worker_database_url(tmp_path: Path) -> str:
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        auth = db["USER"] or ""
        if db["PASSWORD"]:
            auth += f":{db['PASSWORD']}"
        host = f"{auth}@" if auth else ""
        host += f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
        return f"postgres://{host}/{db['NAME']}"
    # SQLite tests use an in-memory database; the probe only runs SELECT 1.
    return f"sqlite:///{tmp_path / 'worker.sqlite3'}"


def _forget_queue(redis_url: str, queue: str) -> None:
    """Remove what kombu left for this one-off queue, and the stored result."""
    import redis

    with redis.Redis.from_url(redis_url) as server:
        server.delete(f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}", queue)
        server.zrem("_kombu.binding_deadlines", queue)


@pytest.mark.redis
@pytest.mark.django_db
def test_a_real_worker_runs_a_task_sent_through_redis(tmp_path):
    redis_url = _worker_redis_url()
    queue = f"settle-test-{uuid.uuid4().hex[:12]}"  # only this test's worker consumes it
    env = {
        **os.environ,
        "SETTLE_ENV": "test",
        "REDIS_URL": redis_url,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "DATABASE_URL": _worker_database_url(tmp_path),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "portal",
                "worker",
                "--pool=solo",
                "-c",
                "1",
                "-Q",
                queue,
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel=INFO",
                "--hostname",
                f"{queue}@%h",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        # The sending side: a client of the same broker that is not eager.
        client = Celery("settle-test-client", broker=redis_url, backend=redis_url, set_as_current=False)
        client.conf.update(
            task_always_eager=False,
            task_default_queue=queue,
            task_serializer="json",
            result_serializer="json",
            accept_content=["json"],
        )
        try:
            client.finalize()
            task = client.tasks[health_probe.name]
            started = time.monotonic()
            result = task.delay(42)
            try:
                value = result.get(timeout=WORKER_START_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - show the worker's log with the failure
                worker_log = log_path.read_text(errors="replace")[-4000:]
                pytest.fail(f"the worker did not complete the task: {exc!r}\n--- worker log ---\n{worker_log}")
            assert value == {"echo": 42, "database": True}
            assert result.status == "SUCCESS"
            assert time.monotonic() - started < WORKER_START_TIMEOUT
            result.forget()
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(timeout=15)
            client.close()
            _forget_queue(redis_url, queue)
    assert "ready" in log_path.read_text(errors="replace")
