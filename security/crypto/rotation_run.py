"""The re-encryption walk of a rotation: batches over primary-key slices, one worker per slice.

Each model's rows of the tenant are split once, at the first run, into
`workers` slices of consecutive primary keys; the bounds are stored in the
rotation's progress (`<label>:bounds`), so every later run (after a kill, with
any number of workers) walks the same slices. A slice's cursor is the last
primary key re-sealed in it (`<label>` for the first slice, `<label>#<n>` for
the others), and `<key>:done` marks a finished slice; `<label>:done` marks the
model done once every slice is.

One batch is one transaction: lock the next rows of the slice, re-seal them
(security.crypto.bulk), write them back (security.crypto.bulk_sql), then lock
the rotation row and advance the slice's cursor. The rotation row is locked
only at the end of a batch, for the commit, so batches of two slices overlap;
if the cursor moved meanwhile (another runner did this batch), the batch is
rolled back and the walk continues from the stored cursor. A killed worker
loses only its uncommitted batch.

With more than one worker, slices run in threads, each on its own database
connection: while one waits for PostgreSQL the other re-seals. Threads are
used only on PostgreSQL outside a transaction (another connection would not
see uncommitted rows, and SQLite has one writer).
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from django.db import connection, models, transaction

from security.crypto import bulk, bulk_sql
from security.crypto.models import KeyRotation, RotationStatus

DEFAULT_WORKERS = 2


@dataclass(frozen=True)
class BatchReport:
    model_label: str
    rows_seen: int
    rows_rewritten: int
    last_pk: int


ProgressCallback = Callable[[KeyRotation, BatchReport], None]


@dataclass(frozen=True)
class Slice:
    """Rows of one model with primary key in (lower, upper]; upper None: no end."""

    label: str
    index: int
    lower: int
    upper: int | None

    @property
    def key(self) -> str:
        # The first slice keeps the plain label: the progress of a one-worker run.
        return self.label if self.index == 0 else f"{self.label}#{self.index}"

    @property
    def done_key(self) -> str:
        return f"{self.key}:done"


def worker_count(requested: int | None) -> int:
    """How many slices run at once: `requested`, or DEFAULT_WORKERS where threads can help."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return 1
    return max(1, requested if requested is not None else DEFAULT_WORKERS)


def reseal_locked_rows(plan: bulk.TablePlan, rows: list[tuple[Any, ...]], *, tenant_id: int, version: int) -> int:
    """Re-seal the locked `rows` (as bulk_sql selects them) whose values name another version; returns rows changed."""
    batch = bulk.reseal_rows(plan, rows, tenant_id=tenant_id, version=version)
    bulk_sql.write_batch(plan, batch, tenant_id=tenant_id)
    return len(batch.records)


def _slice_bounds(model: type[models.Model], *, tenant_id: int, workers: int) -> list[int]:
    """Primary keys splitting the tenant's rows of `model` into `workers` slices of equal size."""
    if workers <= 1:
        return []
    queryset = model._base_manager.filter(tenant_id=tenant_id).order_by("pk")
    total = queryset.count()
    bounds: list[int] = []
    for index in range(1, workers):
        offset = total * index // workers
        if offset == 0:
            continue
        found = queryset.values_list("pk", flat=True)[offset - 1 : offset].first()
        if found is not None and (not bounds or found > bounds[-1]):
            bounds.append(int(found))
    return bounds


def model_slices(*, rotation_pk: int, model: type[models.Model], tenant_id: int, workers: int) -> list[Slice]:
    """The model's slices, splitting it (and storing the bounds) on the first run; [] when the model is done."""
    label = model._meta.label
    with transaction.atomic():
        locked = KeyRotation.objects.select_for_update().get(pk=rotation_pk)
        if locked.progress.get(f"{label}:done"):
            return []
        bounds = locked.progress.get(f"{label}:bounds")
        if bounds is None:
            bounds = _slice_bounds(model, tenant_id=tenant_id, workers=workers) if label not in locked.progress else []
            locked.progress[f"{label}:bounds"] = bounds
            locked.save(update_fields=["progress", "updated_at"])
    edges = [0, *bounds, None]
    return [
        Slice(label=label, index=index, lower=int(edges[index] or 0), upper=edges[index + 1])
        for index in range(len(edges) - 1)
    ]


class _Stop(Exception):
    """The rotation is no longer running: the walk stops."""


def _advance(locked: KeyRotation, part: Slice, report: BatchReport, *, batch_size: int, slice_count: int) -> None:
    locked.progress[part.key] = report.last_pk
    if report.rows_seen < batch_size:
        locked.progress[part.done_key] = True
        siblings = [Slice(part.label, index, 0, None).done_key for index in range(slice_count)]
        if all(locked.progress.get(key) for key in siblings):
            locked.progress[f"{part.label}:done"] = True
    locked.rows_done += report.rows_seen
    locked.save(update_fields=["progress", "rows_done", "updated_at"])


def _slice_batch(
    part: Slice, *, rotation_pk: int, model: type[models.Model], batch_size: int, slice_count: int
) -> tuple[KeyRotation, BatchReport] | None:
    """One batch of `part` in one transaction; None when another runner did it first (nothing kept)."""
    with transaction.atomic():
        current = KeyRotation.objects.select_related("tenant").get(pk=rotation_pk)
        if current.status != RotationStatus.RUNNING:
            raise _Stop
        if current.progress.get(part.done_key):
            return current, BatchReport(model_label=part.label, rows_seen=0, rows_rewritten=0, last_pk=-1)
        after = int(current.progress.get(part.key, part.lower))
        plan = bulk.table_plan(model, current.purpose)
        rows = bulk_sql.lock_rows_after(
            plan, tenant_id=current.tenant_id, after_pk=after, upto_pk=part.upper, limit=batch_size
        )
        rewritten = reseal_locked_rows(plan, rows, tenant_id=current.tenant_id, version=current.to_version)
        report = BatchReport(
            model_label=part.label,
            rows_seen=len(rows),
            rows_rewritten=rewritten,
            last_pk=rows[-1][0] if rows else after,
        )
        locked = KeyRotation.objects.select_for_update().get(pk=rotation_pk)
        if locked.status != RotationStatus.RUNNING:
            raise _Stop
        if int(locked.progress.get(part.key, part.lower)) != after or locked.progress.get(part.done_key):
            transaction.set_rollback(True)
            return None
        _advance(locked, part, report, batch_size=batch_size, slice_count=slice_count)
        return locked, report


@dataclass
class SliceRunner:
    """Walks slices of one model to their end, reporting each batch."""

    rotation_pk: int
    model: type[models.Model]
    batch_size: int
    slice_count: int
    on_progress: ProgressCallback | None
    pause_seconds: float
    report_lock: threading.Lock
    # Set when any slice fails: the other threads stop after their current batch.
    failed: threading.Event

    def run(self, part: Slice) -> None:
        while not self.failed.is_set():
            outcome = _slice_batch(
                part,
                rotation_pk=self.rotation_pk,
                model=self.model,
                batch_size=self.batch_size,
                slice_count=self.slice_count,
            )
            if outcome is None:
                continue  # another runner advanced this slice: go on from its cursor
            rotation, report = outcome
            if report.last_pk != -1 and self.on_progress is not None:
                with self.report_lock:
                    self.on_progress(rotation, report)
            if report.rows_seen < self.batch_size:
                return
            if self.pause_seconds:
                time.sleep(self.pause_seconds)

    def run_in_thread(self, part: Slice, context: contextvars.Context) -> None:
        # The thread's own connection: closed here, as nothing else would.
        try:
            context.run(self.run, part)
        except BaseException:
            self.failed.set()
            raise
        finally:
            connection.close()


def run_model(runner: SliceRunner, slices: list[Slice], *, workers: int) -> bool:
    """Run the slices (in threads when workers > 1); False when the rotation stopped running."""
    try:
        if workers <= 1 or len(slices) <= 1:
            for part in slices:
                runner.run(part)
            return True
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="settle-rotation") as pool:
            # Each thread gets a copy of the caller's context: the tenant scope (and RLS setting) goes along.
            futures = [pool.submit(runner.run_in_thread, part, contextvars.copy_context()) for part in slices]
            for future in futures:
                future.result()
        if runner.failed.is_set():
            return False
        return True
    except _Stop:
        return False
