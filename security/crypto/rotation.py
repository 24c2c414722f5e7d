"""Key rotation: new data key versions, resumable re-encryption, retirement, rewrap.

Rotation of (tenant, purpose), in three steps, each safe to repeat:

1. data_key_rotation_start: generates version N+1 as the active key, marks
   the old active key retiring and records a KeyRotation. New writes from
   then on use N+1 (each process within SETTLE_ACTIVE_KEY_CACHE_SECONDS).
2. data_key_rotation_run: walks every model with fields of that purpose in
   primary-key order, in batches, over one or more slices of the key range
   (security.crypto.rotation_run; two at once on PostgreSQL, in threads).
   Each batch locks its rows, re-seals the values that name a retiring
   version from their column text (security.crypto.bulk, no model
   instances), writes them back with one statement (security.crypto.bulk_sql)
   and stores the slice's last primary key in the rotation's progress, in one
   transaction. A killed worker loses at most its uncommitted batch; the next
   run starts after the last committed one. Rows already on N+1 are left
   alone, so a re-run changes nothing.
3. data_key_rotation_finish: once every process can have seen N+1, counts
   rows still naming a retiring version (re-sealing any a slow process wrote),
   and only when none remain marks those keys retired.

data_keys_rewrap re-wraps data keys under the provider's current master/KMS
key without touching a single row: cheap, and separate from rotation (a new
KMS key protects the same data keys; it is not a revocation).

Both are audited (key.rotation_started / key.rotation_completed / key.rewrapped).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from audit.recorder import audit_record
from portal.models import Tenant
from portal.tenancy.context import platform_scope, tenant_scope
from security.crypto import bulk, bulk_sql, cipher, keyring
from security.crypto.fields import ENCRYPTED_MODELS, BlindIndexField, encrypted_fields
from security.crypto.models import DataKey, DataKeyState, KeyPurpose, KeyRotation, RotationStatus
from security.crypto.providers import get_provider
from security.crypto.rotation_run import BatchReport as BatchReport  # part of this module's API
from security.crypto.rotation_run import (
    ProgressCallback,
    SliceRunner,
    model_slices,
    reseal_locked_rows,
    run_model,
    worker_count,
)

# Rows per batch (one transaction): long enough to make the per-batch round trips
# and commit cheap, short enough that an application write waiting on a locked
# row waits a fraction of a second, and that memory stays a few MB per worker.
DEFAULT_BATCH_SIZE = 2000
ROTATABLE_PURPOSES = (KeyPurpose.PHI, KeyPurpose.SECRET, KeyPurpose.INDEX)


class RotationNotReady(Exception):
    """The rotation cannot finish yet; `retry_after` seconds from now it may."""

    def __init__(self, message: str, *, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def rotatable_models(purpose: str) -> list[type[models.Model]]:
    """Models with fields of `purpose`, in a stable order."""
    return [
        ENCRYPTED_MODELS[label]
        for label in sorted(ENCRYPTED_MODELS)
        if encrypted_fields(ENCRYPTED_MODELS[label], purpose)
    ]


def _stale_filter(model: type[models.Model], *, tenant_id: int, purpose: str, versions: Iterable[int]) -> Q:
    """Rows of `model` whose fields of `purpose` name any of `versions`."""
    condition = Q()
    for field in encrypted_fields(model, purpose):
        for version in versions:
            if isinstance(field, BlindIndexField):
                condition |= Q(**{f"{field.name}__startswith": f"b{version}:"})
            else:
                prefix = cipher.key_prefix(tenant_id=tenant_id, purpose=purpose, version=version)
                condition |= Q(**{f"{field.name}__sealed_prefix": prefix})
    return condition


def _retiring_versions(*, tenant: Tenant, purpose: str) -> list[int]:
    return list(
        DataKey.objects.filter(tenant=tenant, purpose=purpose, state=DataKeyState.RETIRING)
        .order_by("version")
        .values_list("version", flat=True)
    )


def rows_using(*, tenant: Tenant, purpose: str, versions: Iterable[int]) -> int:
    """How many rows of `tenant` still name any of `versions` of `purpose`."""
    versions = list(versions)
    if not versions:
        return 0
    total = 0
    for model in rotatable_models(purpose):
        total += (
            model._base_manager.filter(tenant_id=tenant.pk)
            .filter(_stale_filter(model, tenant_id=tenant.pk, purpose=purpose, versions=versions))
            .count()
        )
    return total


def data_key_rotation_start(*, tenant: Tenant, purpose: str, actor: Any | None = None) -> KeyRotation:
    """Activate a new data key version for (tenant, purpose) and record the rotation.

    Platform operator or clinic admin (the caller checks). Returns the running
    rotation if there is one already (starting twice is harmless). Writes
    key.rotation_started in the same transaction. Raises KeyUnavailableError
    if the provider cannot generate a key (nothing is written then).
    """
    if purpose not in ROTATABLE_PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}")
    with tenant_scope(tenant), transaction.atomic():
        running = (
            KeyRotation.objects.select_for_update()
            .filter(tenant=tenant, purpose=purpose, status=RotationStatus.RUNNING)
            .first()
        )
        if running is not None:
            return running
        # Lock the tenant's keys of this purpose (FOR UPDATE cannot take an aggregate).
        versions = list(
            DataKey.objects.select_for_update().filter(tenant=tenant, purpose=purpose).values_list("version", flat=True)
        )
        current = max(versions, default=0)
        DataKey.objects.filter(tenant=tenant, purpose=purpose, state=DataKeyState.ACTIVE).update(
            state=DataKeyState.RETIRING
        )
        new_key, _ = keyring.data_key_create(tenant_id=tenant.pk, purpose=purpose, version=current + 1)
        keyring.forget_tenant(tenant.pk)  # this process: the new version from now on
        rows_total = sum(model._base_manager.filter(tenant_id=tenant.pk).count() for model in rotatable_models(purpose))
        rotation = KeyRotation.objects.create(
            tenant=tenant,
            purpose=purpose,
            to_version=new_key.version,
            rows_total=rows_total,
            started_by=getattr(actor, "public_id", None),
        )
        audit_record(
            action="key.rotation_started",
            tenant=tenant,
            actor=actor,
            actor_role="system" if actor is None else "",
            target_type="key_rotation",
            target_id=str(rotation.public_id),
            details={"purpose": purpose, "to_version": new_key.version, "rows_total": rows_total},
        )
        transaction.on_commit(lambda: keyring.forget_tenant(tenant.pk))
    return rotation


def _reseal_locked_rows(plan: bulk.TablePlan, rows: list[tuple[Any, ...]], *, tenant_id: int, version: int) -> int:
    # The finishing sweep's re-seal (a seam the tests replace to leave stragglers behind).
    return reseal_locked_rows(plan, rows, tenant_id=tenant_id, version=version)


def data_key_rotation_run(
    *,
    rotation: KeyRotation,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: ProgressCallback | None = None,
    pause_seconds: float = 0.0,
    workers: int | None = None,
) -> KeyRotation:
    """Re-seal every row of the rotation's tenant that names an old version, in batches.

    Resumable and idempotent (see the module docstring and
    security.crypto.rotation_run). `workers` slices of each model run at
    once (default rotation_run.DEFAULT_WORKERS on PostgreSQL outside a
    transaction, else 1). Does not retire the old key: call
    data_key_rotation_finish.
    """
    tenant = rotation.tenant
    workers = worker_count(workers)
    with tenant_scope(tenant):
        for model in rotatable_models(rotation.purpose):
            slices = model_slices(rotation_pk=rotation.pk, model=model, tenant_id=tenant.pk, workers=workers)
            runner = SliceRunner(
                rotation_pk=rotation.pk,
                model=model,
                batch_size=batch_size,
                slice_count=len(slices),
                on_progress=on_progress,
                pause_seconds=pause_seconds,
                report_lock=threading.Lock(),
                failed=threading.Event(),
            )
            if not run_model(runner, slices, workers=workers):
                break
        return KeyRotation.objects.get(pk=rotation.pk)


def data_key_rotation_finish(*, rotation: KeyRotation, actor: Any | None = None) -> KeyRotation:
    """Retire the old versions once no row names them; raise RotationNotReady if it is too early.

    Writes key.rotation_completed in the same transaction as the retirement.
    """
    tenant = rotation.tenant
    with tenant_scope(tenant):
        new_key = DataKey.objects.get(tenant=tenant, purpose=rotation.purpose, version=rotation.to_version)
        wait = float(getattr(settings, "SETTLE_ACTIVE_KEY_CACHE_SECONDS", keyring.DEFAULT_ACTIVE_VERSION_SECONDS))
        ready_at = new_key.created_at.timestamp() + min(wait, keyring.MAX_CACHE_SECONDS)
        if time.time() < ready_at:
            raise RotationNotReady(
                "other processes may still be writing with the old key", retry_after=ready_at - time.time()
            )
        old_versions = _retiring_versions(tenant=tenant, purpose=rotation.purpose)
        # Rows a slow process sealed with an old key after the batch passed them.
        for model in rotatable_models(rotation.purpose):
            stale_pks = list(
                model._base_manager.filter(tenant_id=tenant.pk)
                .filter(_stale_filter(model, tenant_id=tenant.pk, purpose=rotation.purpose, versions=old_versions))
                .order_by("pk")
                .values_list("pk", flat=True)
            )
            plan = bulk.table_plan(model, rotation.purpose)
            for start in range(0, len(stale_pks), DEFAULT_BATCH_SIZE):
                chunk = stale_pks[start : start + DEFAULT_BATCH_SIZE]
                with transaction.atomic():
                    rows = bulk_sql.lock_rows_in(plan, tenant_id=tenant.pk, pks=chunk)
                    _reseal_locked_rows(plan, rows, tenant_id=tenant.pk, version=rotation.to_version)
        with transaction.atomic():
            locked = KeyRotation.objects.select_for_update().get(pk=rotation.pk)
            if locked.status == RotationStatus.FINISHED:
                return locked
            remaining = rows_using(tenant=tenant, purpose=rotation.purpose, versions=old_versions)
            if remaining:
                raise RotationNotReady(f"{remaining} rows still use an old key version", retry_after=1.0)
            retired = DataKey.objects.filter(
                tenant=tenant, purpose=rotation.purpose, state=DataKeyState.RETIRING, version__in=old_versions
            ).update(state=DataKeyState.RETIRED, retired_at=timezone.now())
            locked.status = RotationStatus.FINISHED
            locked.finished_at = timezone.now()
            locked.save(update_fields=["status", "finished_at", "updated_at"])
            audit_record(
                action="key.rotation_completed",
                tenant=tenant,
                actor=actor,
                actor_role="system" if actor is None else "",
                target_type="key_rotation",
                target_id=str(locked.public_id),
                details={
                    "purpose": rotation.purpose,
                    "to_version": rotation.to_version,
                    "retired_versions": [str(v) for v in old_versions],
                    "keys_retired": retired,
                    "rows_done": locked.rows_done,
                },
            )
            transaction.on_commit(lambda: keyring.forget_tenant(tenant.pk))
    return locked


def data_key_rotate(
    *,
    tenant: Tenant,
    purpose: str,
    actor: Any | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: ProgressCallback | None = None,
    pause_seconds: float = 0.0,
    wait: bool = True,
    workers: int | None = None,
) -> KeyRotation:
    """Start (or resume) a rotation, run it to the end and retire the old key.

    With wait=False, raises RotationNotReady instead of sleeping when other
    processes may still hold the old active version (the Celery task retries).
    """
    rotation = data_key_rotation_start(tenant=tenant, purpose=purpose, actor=actor)
    rotation = data_key_rotation_run(
        rotation=rotation, batch_size=batch_size, on_progress=on_progress, pause_seconds=pause_seconds, workers=workers
    )
    while True:
        try:
            return data_key_rotation_finish(rotation=rotation, actor=actor)
        except RotationNotReady as exc:
            if not wait:
                raise
            time.sleep(max(0.05, min(exc.retry_after, 5.0)))


def rotation_progress(*, tenant: Tenant) -> list[KeyRotation]:
    """The tenant's rotations, newest first (for the console and the command)."""
    with tenant_scope(tenant):
        return list(KeyRotation.objects.filter(tenant=tenant).order_by("-started_at")[:20])


def data_keys_rewrap(*, tenant: Tenant | None = None, actor: Any | None = None) -> int:
    """Re-wrap data keys (of `tenant`, or every tenant) under the current provider key.

    Platform operators only. Rows are not touched: the data keys themselves do
    not change, only what protects them. Retired keys are rewrapped too (a
    backup may still need them). Returns how many keys were rewrapped; writes
    one key.rewrapped event per tenant in the same transaction. Raises
    KeyUnavailableError (and writes nothing for that tenant) when a key
    cannot be unwrapped or wrapped.
    """
    provider = get_provider()
    target_key_id = provider.current_key_id()
    tenants = [tenant] if tenant is not None else list(Tenant.objects.order_by("pk"))
    total = 0
    for each in tenants:
        with platform_scope(), transaction.atomic():
            rows = list(DataKey.objects.select_for_update().filter(tenant=each).order_by("purpose", "version"))
            changed = 0
            for row in rows:
                if row.provider == provider.name and row.wrapping_key_id == target_key_id:
                    continue
                context = keyring.encryption_context(tenant_id=row.tenant_id, purpose=row.purpose, version=row.version)
                plaintext = get_provider(row.provider).unwrap(
                    wrapped=bytes(row.wrapped_key), key_id=row.wrapping_key_id, context=context
                )
                wrapped, key_id = provider.wrap(plaintext=plaintext, context=context)
                del plaintext
                row.wrapped_key = wrapped
                row.wrapping_key_id = key_id
                row.provider = provider.name
                row.rewrapped_at = timezone.now()
                row.save(update_fields=["wrapped_key", "wrapping_key_id", "provider", "rewrapped_at"])
                changed += 1
            if changed:
                audit_record(
                    action="key.rewrapped",
                    tenant=each,
                    actor=actor,
                    actor_role="system" if actor is None else "",
                    target_type="tenant",
                    target_id=str(each.public_id),
                    details={"keys": changed, "provider": provider.name},
                )
            total += changed
    return total
