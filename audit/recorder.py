"""The one way to write an audit event.

Call it inside the same transaction as the act it records, so the event and
the act commit or roll back together.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.http import HttpRequest

from audit.actions import ACTIONS
from audit.models import AuditEvent, Outcome
from portal.logging import request_id_var
from portal.models import Tenant
from portal.net import client_ip

# Detail values must be short scalars: ids, codes, counts, amounts. Anything
# else is refused so that PHI cannot slip into the trail through free text.
_ALLOWED_DETAIL_TYPES = (str, int, bool, type(None))
_MAX_DETAIL_STRING = 64


class AuditDetailError(ValueError):
    pass


_MAX_DETAIL_LIST = 500


def _validated_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in (details or {}).items():
        if isinstance(value, list | tuple):
            # Lists of references (public ids of the records a page showed).
            if len(value) > _MAX_DETAIL_LIST or not all(
                isinstance(item, str) and len(item) <= _MAX_DETAIL_STRING for item in value
            ):
                raise AuditDetailError(f"audit detail {key!r} must be a list of short references")
            clean[key] = list(value)
            continue
        if not isinstance(value, _ALLOWED_DETAIL_TYPES):
            raise AuditDetailError(f"audit detail {key!r} must be a short scalar")
        if isinstance(value, str) and len(value) > _MAX_DETAIL_STRING:
            raise AuditDetailError(f"audit detail {key!r} is too long to be a reference or code")
        clean[key] = value
    return clean


def audit_record(
    *,
    action: str,
    tenant: Tenant | None,
    outcome: str = Outcome.SUCCESS,
    actor: Any | None = None,
    actor_role: str = "",
    target_type: str = "",
    target_id: str = "",
    request: HttpRequest | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    if action not in ACTIONS:
        raise ValueError(f"unregistered audit action {action!r}")
    return AuditEvent.objects.create(
        tenant=tenant,
        actor_user_id=getattr(actor, "public_id", None),
        actor_role=actor_role,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        outcome=outcome,
        source_ip=client_ip(request) if request is not None else None,
        request_id=request_id_var.get() if request_id_var.get() != "-" else "",
        details=_validated_details(details),
    )
