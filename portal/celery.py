"""The Celery app. In the embedded default tasks run eagerly in-process."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import beat_init, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("settle")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
@beat_init.connect
def refuse_unsafe_database_role(**kwargs: Any) -> None:
    """Production workers and beat refuse to start as an unsafe database role (portal.dbroles).

    Celery logs and swallows exceptions raised by signal handlers, so the
    refusal leaves as SystemExit.
    """
    from django.core.exceptions import ImproperlyConfigured

    from portal.dbroles import refuse_unsafe_runtime_role

    try:
        refuse_unsafe_runtime_role()
    except ImproperlyConfigured as exc:
        raise SystemExit(f"settle: {exc}") from exc
