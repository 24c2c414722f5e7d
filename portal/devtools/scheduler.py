"""The development stack's stand-in for Celery beat.

`make run` has no broker and no beat: tasks run eagerly in-process. Without
something to start them, the periodic tasks of CELERY_BEAT_SCHEDULE (the
stuck-payment sweep that settles payments whose webhook never came and
releases attempts abandoned at 3-D Secure) would never run. This scheduler
runs each of them in the devstack's own process, on its interval, the way
beat would: the first run one interval after start, one run at a time, a
failing run logged and retried at its next time. Production runs exactly one
real beat (docs/running.md); this is development only.

Schedules may be seconds (int or float), a timedelta, a celery `schedule`
(its `run_every`) or a `crontab` (its `remaining_estimate`).
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Clock = Callable[[], float]
RunTask = Callable[[str], None]
Say = Callable[[str], None]


def seconds_until_next(schedule: Any, *, last_run: datetime.datetime) -> float:
    """Seconds from `last_run` until a beat schedule is next due."""
    if isinstance(schedule, bool):
        raise TypeError("a beat schedule cannot be a boolean")
    if isinstance(schedule, int | float):
        return float(schedule)
    if isinstance(schedule, datetime.timedelta):
        return schedule.total_seconds()
    run_every = getattr(schedule, "run_every", None)
    if isinstance(run_every, datetime.timedelta):
        return run_every.total_seconds()
    estimate = getattr(schedule, "remaining_estimate", None)
    if callable(estimate):
        return max(float(estimate(last_run).total_seconds()), 1.0)
    raise TypeError(f"unsupported beat schedule {schedule!r}")


@dataclass
class Entry:
    name: str  # the CELERY_BEAT_SCHEDULE key
    task: str  # the registered task name
    schedule: Any
    due_at: float  # on the scheduler's clock

    def describe(self) -> str:
        seconds = seconds_until_next(self.schedule, last_run=datetime.datetime.now(tz=datetime.UTC))
        return f"{self.task} every {seconds:g}s"


class DevScheduler:
    """Runs the beat schedule's tasks on their intervals, one at a time."""

    def __init__(
        self,
        schedule: Mapping[str, Mapping[str, Any]],
        *,
        run_task: RunTask,
        clock: Clock = time.monotonic,
        say: Say = print,
    ) -> None:
        self._run_task = run_task
        self._clock = clock
        self._say = say
        now = clock()
        self.entries = [
            Entry(
                name=name,
                task=str(spec["task"]),
                schedule=spec["schedule"],
                due_at=now + seconds_until_next(spec["schedule"], last_run=_utcnow()),
            )
            for name, spec in schedule.items()
        ]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def describe(self) -> str:
        return ", ".join(entry.describe() for entry in self.entries) or "nothing scheduled"

    def run_due(self) -> list[str]:
        """Run every entry whose time has come; returns the task names run."""
        ran = []
        for entry in self.entries:
            if self._clock() < entry.due_at:
                continue
            try:
                self._run_task(entry.task)
            except Exception as exc:  # noqa: BLE001 - a failing task must not stop the others or the stack
                self._say(f"    scheduler: {entry.task} failed ({type(exc).__name__}); next run on schedule")
            ran.append(entry.task)
            # From the end of this run, as beat does: a slow run never queues a backlog.
            entry.due_at = self._clock() + seconds_until_next(entry.schedule, last_run=_utcnow())
        return ran

    def seconds_to_next(self) -> float:
        if not self.entries:
            return 60.0
        return max(0.0, min(entry.due_at for entry in self.entries) - self._clock())

    # --- The thread the devstack runs it in -------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="dev-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(min(self.seconds_to_next(), 1.0)):
            self.run_due()


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.UTC)


def run_celery_task(name: str) -> None:
    """Run a registered Celery task in this process and wait for it (Django is set up)."""
    from django.db import connections

    from portal.celery import app

    # What a worker does at start: import every app's tasks module (Celery's
    # autodiscovery is lazy), so tasks nothing in this process imported are known.
    app.loader.import_default_modules()
    try:
        app.tasks[name].apply(throw=True)
    finally:
        # Don't hold the database between runs (SQLite allows one writer at a time).
        connections.close_all()


def scheduler_from_settings(*, say: Say = print) -> DevScheduler:
    from django.conf import settings

    return DevScheduler(settings.CELERY_BEAT_SCHEDULE, run_task=run_celery_task, say=say)
