"""Running a key rotation after the response when Celery tasks are eager.

Under a real Celery worker, `data_key_rotate_task.delay()` only enqueues: the
"Rotate keys" POST redirects at once and the worker re-encrypts. With eager
tasks (`make run` without Redis, CELERY_TASK_ALWAYS_EAGER) `.delay()` runs the
whole rotation inside the request, including the wait for other processes'
cached key versions (SETTLE_ACTIVE_KEY_CACHE_SECONDS, 30 s by default), and
the browser sees nothing for half a minute.

So, eagerly, the task runs in a daemon thread started on commit: the
redirect goes out at once and the progress page, which refreshes itself,
shows the batches as they commit. This was preferred to letting the progress
page's refresh drive the batches: a GET would then write, and a rotation
would stall whenever nobody watched the page. Batches are committed one by
one, so a thread cut short (the development server reloading) loses at most
one batch; `manage.py rotate_keys` resumes the rotation left running.

The thread opens its own database connection (closed at the end). Tests that
keep their data in an uncommitted transaction cannot share it with another
connection: they set SETTLE_ROTATION_EAGER_THREAD = False, and the task then
runs inline on commit as before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)

_threads: list[threading.Thread] = []
_threads_lock = threading.Lock()


def _eager() -> bool:
    from security.tasks import data_key_rotate_task

    return bool(data_key_rotate_task.app.conf.task_always_eager)


def _run(*, tenant_id: int, purpose: str, actor_id: int | None) -> None:
    from security.tasks import data_key_rotate_task

    try:
        data_key_rotate_task.delay(tenant_id=tenant_id, purpose=purpose, actor_id=actor_id)
    except Exception:  # a background thread has nobody to raise to: log (ids only) and leave it resumable
        logger.exception("key rotation of tenant %s (%s) stopped; manage.py rotate_keys resumes it", tenant_id, purpose)
    finally:
        connection.close()


def rotation_dispatch(*, tenant_id: int, purpose: str, actor_id: int | None) -> Callable[[], None]:
    """The on_commit callback that starts one purpose's rotation without holding up the response."""

    def dispatch() -> None:
        from security.tasks import data_key_rotate_task

        if not _eager() or not getattr(settings, "SETTLE_ROTATION_EAGER_THREAD", True):
            data_key_rotate_task.delay(tenant_id=tenant_id, purpose=purpose, actor_id=actor_id)
            return
        thread = threading.Thread(
            target=_run,
            kwargs={"tenant_id": tenant_id, "purpose": purpose, "actor_id": actor_id},
            name=f"key-rotation-{tenant_id}-{purpose}",
            daemon=True,
        )
        with _threads_lock:
            _threads[:] = [t for t in _threads if t.is_alive()]
            _threads.append(thread)
        thread.start()

    return dispatch


def rotation_threads_join(timeout: float) -> bool:
    """Wait for the background rotations of this process; True if none is left running (tests, shutdown)."""
    with _threads_lock:
        threads = list(_threads)
    for thread in threads:
        thread.join(timeout)
    return not any(thread.is_alive() for thread in threads)
