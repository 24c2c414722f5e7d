"""The key console: a clinic's data keys, its rotations, and starting a rotation.

Clinic admins only ("keys.rotate"). Shows key metadata (purpose, version,
state, dates), never key material: the wrapped key is not even loaded.
Starting a rotation activates the new key versions in the request (so a
provider failure is reported at once and nothing is written) and queues the
re-encryption as a Celery task once that transaction has committed, then
redirects to the progress page at once (with eager tasks the re-encryption
runs in a background thread: security.rotation_background). The rotation
service records key.rotation_started / key.rotation_completed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from portal.models import Tenant
from security.crypto.errors import KeyUnavailableError
from security.crypto.models import DataKey, KeyPurpose, KeyRotation, RotationStatus
from security.crypto.rotation import ROTATABLE_PURPOSES, data_key_rotation_start, rotation_progress
from security.permissions import require_permission
from security.rotation_background import rotation_dispatch

ALL_PURPOSES = "all"


def _keys_by_purpose(tenant: Tenant) -> list[dict[str, Any]]:
    rows = list(
        DataKey.objects.filter(tenant=tenant)
        .only("purpose", "version", "state", "provider", "created_at", "retired_at", "rewrapped_at")
        .order_by("purpose", "-version")
    )
    return [
        {"purpose": purpose, "label": KeyPurpose(purpose).label, "keys": [k for k in rows if k.purpose == purpose]}
        for purpose in ROTATABLE_PURPOSES
    ]


def _console(request: HttpRequest, *, status: int = 200) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    rotations = rotation_progress(tenant=tenant)
    context = {
        "purposes": _keys_by_purpose(tenant),
        "rotations": rotations,
        "running": any(r.status == RotationStatus.RUNNING for r in rotations),
    }
    return render(request, "security/keys.html", context, status=status)


def _queue_rotation(*, tenant_id: int, purpose: str, actor_id: int | None) -> Callable[[], object]:
    """The on_commit callback that hands one purpose's rotation to Celery, or eagerly to a background thread."""
    return rotation_dispatch(tenant_id=tenant_id, purpose=purpose, actor_id=actor_id)


@require_permission("keys.rotate")
@require_GET
def keys(request: HttpRequest) -> HttpResponse:
    return _console(request)


@require_permission("keys.rotate")
@require_POST
def rotate(request: HttpRequest) -> HttpResponse:
    """Start a rotation of every purpose (or of one, with purpose=<name>)."""
    tenant = request.tenant  # type: ignore[attr-defined]
    chosen = request.POST.get("purpose", ALL_PURPOSES)
    purposes: list[str]
    if chosen == ALL_PURPOSES:
        purposes = [str(purpose) for purpose in ROTATABLE_PURPOSES]
    elif chosen in ROTATABLE_PURPOSES:
        purposes = [chosen]
    else:
        messages.error(request, f"Unknown key purpose {chosen[:40]!r}; nothing was rotated.")
        return _console(request, status=400)
    running = sorted(
        KeyRotation.objects.filter(tenant=tenant, purpose__in=purposes, status=RotationStatus.RUNNING).values_list(
            "purpose", flat=True
        )
    )
    if running:
        messages.error(
            request,
            "A key rotation is already running ("
            + ", ".join(KeyPurpose(p).label for p in running)
            + "); wait for it to finish. Nothing new was started.",
        )
        return _console(request, status=409)
    actor = request.user
    try:
        started = []
        with transaction.atomic():
            for purpose in purposes:
                started.append(data_key_rotation_start(tenant=tenant, purpose=purpose, actor=actor))
                transaction.on_commit(_queue_rotation(tenant_id=tenant.pk, purpose=purpose, actor_id=actor.pk))
    except KeyUnavailableError as exc:
        messages.error(request, f"The key provider could not create a new key: {exc}. Nothing was rotated.")
        return _console(request, status=503)
    messages.success(request, "Key rotation started. Rows are re-encrypted in the background; progress is below.")
    if len(started) == 1:
        return redirect("keys:rotation", rotation_id=started[0].public_id)
    return redirect("keys:keys")


@require_permission("keys.rotate")
@require_GET
def rotation_detail(request: HttpRequest, rotation_id: UUID) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    rotation = KeyRotation.objects.filter(tenant=tenant, public_id=rotation_id).first()
    if rotation is None:
        raise Http404
    running = rotation.status == RotationStatus.RUNNING
    return render(request, "security/rotation.html", {"rotation": rotation, "running": running})
