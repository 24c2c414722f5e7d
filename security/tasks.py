"""Security background tasks. Thin: they take ids and call one service."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from portal.models import Tenant
from security.crypto.rotation import DEFAULT_BATCH_SIZE, RotationNotReady, data_key_rotate


@shared_task(bind=True, max_retries=None, acks_late=True)
def data_key_rotate_task(
    self: Any, tenant_id: int, purpose: str, actor_id: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE
) -> dict[str, Any]:
    """Run (or resume) the rotation of one tenant's data keys of `purpose` to the end.

    Resumable: a worker killed mid-run leaves the committed batches done; the
    redelivered task (acks_late) continues after them. When other processes
    may still hold the old key version, retries later instead of sleeping.
    """
    from security.models import User

    tenant = Tenant.objects.get(pk=tenant_id)
    actor = User.objects.filter(pk=actor_id).first() if actor_id else None
    try:
        # Eagerly (embedded default) a retry would run at once in a loop: sleep instead.
        wait = bool(getattr(self.request, "is_eager", False))
        rotation = data_key_rotate(tenant=tenant, purpose=purpose, actor=actor, batch_size=batch_size, wait=wait)
    except RotationNotReady as exc:
        raise self.retry(countdown=max(1, int(exc.retry_after) + 1)) from None
    return {"rotation": str(rotation.public_id), "status": rotation.status, "rows_done": rotation.rows_done}


@shared_task(acks_late=True, max_retries=5, default_retry_delay=30)
def password_reset_deliver(
    *, email: str, tenant_id: int | None, refusal: str, source_ip: str | None, request_id: str = "-"
) -> str:
    """Look the address up, issue and email a reset link when it has one; audit either way.

    Runs off the request so that the "Forgot password" answer takes the same
    time whether or not the address has an account (security.recovery).
    """
    from portal.logging import request_id_var
    from portal.tenancy.context import platform_scope, tenant_scope
    from security.recovery import password_reset_issue

    tenant = Tenant.objects.filter(pk=tenant_id).first() if tenant_id is not None else None
    token = request_id_var.set(request_id or "-")
    try:
        with tenant_scope(tenant) if tenant is not None else platform_scope():
            return password_reset_issue(email=email, tenant=tenant, refusal=refusal, source_ip=source_ip).outcome
    finally:
        request_id_var.reset(token)
