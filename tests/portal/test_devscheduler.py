"""The development stack's in-process scheduler (make run has no Celery beat)."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from celery.schedules import crontab, schedule
from django.conf import settings

from portal.devtools.scheduler import DevScheduler, run_celery_task, scheduler_from_settings, seconds_until_next


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_tasks_run_on_their_intervals_first_one_interval_after_start():
    clock = FakeClock()
    ran: list[str] = []
    scheduler = DevScheduler(
        {"fast": {"task": "t.fast", "schedule": 10}, "slow": {"task": "t.slow", "schedule": timedelta(seconds=25)}},
        run_task=ran.append,
        clock=clock,
    )

    assert scheduler.run_due() == []
    clock.now += 10
    assert scheduler.run_due() == ["t.fast"]
    clock.now += 9
    assert scheduler.run_due() == []
    clock.now += 1
    assert scheduler.run_due() == ["t.fast"]
    clock.now += 5
    assert scheduler.run_due() == ["t.slow"]
    assert ran == ["t.fast", "t.fast", "t.slow"]
    assert scheduler.seconds_to_next() == pytest.approx(5)


def test_a_failing_task_is_reported_and_does_not_stop_the_others():
    clock = FakeClock()
    said: list[str] = []
    ran: list[str] = []

    def run(name: str) -> None:
        if name == "t.broken":
            raise RuntimeError("boom")
        ran.append(name)

    scheduler = DevScheduler(
        {"a": {"task": "t.broken", "schedule": 5}, "b": {"task": "t.ok", "schedule": 5}},
        run_task=run,
        clock=clock,
        say=said.append,
    )
    clock.now += 5
    assert scheduler.run_due() == ["t.broken", "t.ok"]
    assert ran == ["t.ok"]
    assert said == ["    scheduler: t.broken failed (RuntimeError); next run on schedule"]
    clock.now += 5
    assert scheduler.run_due() == ["t.broken", "t.ok"], "the failed task runs again at its next time"


def test_schedule_forms():
    now = datetime.datetime(2026, 12, 2, 9, 0, 30, tzinfo=datetime.UTC)
    assert seconds_until_next(300, last_run=now) == 300
    assert seconds_until_next(2.5, last_run=now) == 2.5
    assert seconds_until_next(timedelta(minutes=2), last_run=now) == 120
    assert seconds_until_next(schedule(run_every=timedelta(seconds=42)), last_run=now) == 42
    just_ran = datetime.datetime.now(tz=datetime.UTC)
    assert 0 < seconds_until_next(crontab(minute="*"), last_run=just_ran) <= 60
    with pytest.raises(TypeError):
        seconds_until_next("often", last_run=now)


def test_the_scheduler_runs_the_settings_beat_schedule():
    scheduler = scheduler_from_settings()
    tasks = {entry.task for entry in scheduler.entries}
    assert tasks == {spec["task"] for spec in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "billing.tasks.payments_settle_stuck" in tasks
    assert "billing.tasks.payments_settle_stuck every 300s" in scheduler.describe()


@pytest.mark.django_db(transaction=True)
def test_a_scheduled_task_runs_in_this_process(clinic_a, monkeypatch):
    # The sweep, through the Celery app as the scheduler calls it, without a broker.
    swept = []
    monkeypatch.setattr("billing.tasks.payments_settle_stuck_for_tenant", lambda *, tenant: swept.append(tenant) or 0)

    run_celery_task("billing.tasks.payments_settle_stuck")

    assert [tenant.pk for tenant in swept] == [clinic_a.tenant.pk]


def test_the_thread_starts_and_stops():
    clock = FakeClock()
    scheduler = DevScheduler({"a": {"task": "t.a", "schedule": 3600}}, run_task=lambda name: None, clock=clock)
    scheduler.start()
    scheduler.stop(timeout=5)
    assert scheduler._thread is not None and not scheduler._thread.is_alive()


def test_the_devstack_process_knows_the_scheduled_tasks_without_importing_them(tmp_path):
    # A fresh interpreter, as the devstack is: nothing has imported billing.tasks,
    # and Celery's autodiscovery is lazy.
    code = (
        "import django; django.setup()\n"
        "from portal.celery import app\n"
        "from portal.devtools.scheduler import run_celery_task\n"
        "assert 'billing.tasks.payments_settle_stuck' not in app.tasks\n"
        "try:\n"
        "    run_celery_task('billing.tasks.payments_settle_stuck')\n"
        "except Exception as exc:\n"
        "    print('ran-into', type(exc).__name__)\n"
        "print('registered', 'billing.tasks.payments_settle_stuck' in app.tasks)\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if k != "REDIS_URL"},
        "SETTLE_ENV": "development",
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        # An empty database of its own: the task runs and finds no tables, touching nothing shared.
        "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}",
        "SETTLE_VAR_DIR": str(tmp_path),
    }
    result = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert "registered True" in result.stdout, result.stdout + result.stderr
    # It got as far as running the task (which then finds an empty database).
    assert "NotRegistered" not in result.stdout + result.stderr
