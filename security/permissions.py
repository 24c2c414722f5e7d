"""The permission registry: which role may do what, and view declarations.

Every view is wrapped in exactly one of `public_view` or `require_permission`;
tests walk the URL configuration and fail on a view that declares neither.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase

from security.models import Membership, Role

ViewFunc = TypeVar("ViewFunc", bound=Callable[..., HttpResponseBase])

# Permission name -> what it allows. Names are stable identifiers.
PERMISSIONS: dict[str, str] = {
    "payments.view": "See payments, ledgers and balances",
    "patients.view": "See patients and their statements",
    "audit.view": "Search the audit trail, see access reports and verify the chain",
    "audit.export": "Export the audit trail and download exports",
    "account.sessions": "See and end one's own sessions",
    "keys.rotate": "See the clinic's data keys and rotations, and start a key rotation",
}

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    Role.PATIENT: frozenset(),
    Role.FRONT_DESK: frozenset({"payments.view", "patients.view", "account.sessions"}),
    Role.BILLING_MANAGER: frozenset({"payments.view", "patients.view", "account.sessions"}),
    Role.CLINIC_ADMIN: frozenset({"payments.view", "patients.view", "keys.rotate", "account.sessions"}),
    Role.COMPLIANCE_OFFICER: frozenset({"payments.view", "audit.view", "audit.export", "account.sessions"}),
}

# Where a view may be served: on a tenant's host or on the platform host.
TENANT_HOST = "tenant"
PLATFORM_HOST = "platform"
ANY_HOST = "any"


def _check_host(request: HttpRequest, host: str) -> None:
    if host == TENANT_HOST and getattr(request, "tenant", None) is None:
        raise Http404
    if host == PLATFORM_HOST and not getattr(request, "is_platform_host", False):
        raise Http404


def public_view(*, host: str) -> Callable[[ViewFunc], ViewFunc]:
    """Declare a view open to anyone (it still runs on one kind of host only)."""

    def decorator(view: ViewFunc) -> ViewFunc:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            _check_host(request, host)
            return view(request, *args, **kwargs)

        wrapped.settle_permission = None  # type: ignore[attr-defined]
        wrapped.settle_public = True  # type: ignore[attr-defined]
        return wrapped  # type: ignore[return-value]

    return decorator


def membership_for(request: HttpRequest) -> Membership | None:
    user = request.user
    tenant = getattr(request, "tenant", None)
    if tenant is None or not user.is_authenticated:
        return None
    return Membership.objects.filter(tenant=tenant, user=user, is_active=True).first()


def require_permission(permission: str) -> Callable[[ViewFunc], ViewFunc]:
    """Declare the permission a tenant staff view needs, and enforce it."""
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")

    def decorator(view: ViewFunc) -> ViewFunc:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            _check_host(request, TENANT_HOST)
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            membership = membership_for(request)
            if membership is None or permission not in ROLE_PERMISSIONS.get(membership.role, frozenset()):
                raise PermissionDenied
            request.membership = membership  # type: ignore[attr-defined]
            return view(request, *args, **kwargs)

        wrapped.settle_permission = permission  # type: ignore[attr-defined]
        wrapped.settle_public = False  # type: ignore[attr-defined]
        return wrapped  # type: ignore[return-value]

    return decorator
