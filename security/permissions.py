"""The permission registry: which role may do what, and view declarations.

Every view is wrapped in exactly one of `public_view` or `require_permission`;
tests walk the URL configuration and fail on a view that declares neither.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.urls import reverse
from django.utils.http import urlencode

from security.models import BreakGlassGrant, Membership, Role

ViewFunc = TypeVar("ViewFunc", bound=Callable[..., HttpResponseBase])

# Permission name -> what it allows. Names are stable identifiers.
PERMISSIONS: dict[str, str] = {
    "dashboard.view": "See the staff dashboard",
    "payments.view": "See payments, ledgers and balances",
    "patients.view": "See patients and their statements",
    "audit.view": "Search the audit trail, see access reports and verify the chain",
    "audit.export": "Export the audit trail and download exports",
    "account.sessions": "See and end one's own sessions",
    "account.manage": "Change one's own password and recovery codes",
    "keys.rotate": "See the clinic's data keys and rotations, and start a key rotation",
    "staff.manage": "Invite staff, change roles, deactivate, reset MFA and unlock accounts",
    "platform.break_glass": "Start and end emergency access to a clinic (platform operators)",
    "refunds.request": "Refund a payment (alone up to the role's limit; above it a second person approves)",
    "refunds.approve": "Approve or reject other people's refund requests",
    "disputes.manage": "See the clinic's disputes and their evidence due dates",
    "platform.clinics": "Onboard, edit, suspend and reactivate clinics, verify their domains and invite their first admin (platform operators, platform host)",
    "settings.manage": "Change the clinic's profile, branding, processor keys and policies",
    "payments.cancel": "Cancel a payment left waiting for the patient's 3-D Secure authentication",
    "ledger.adjust": "Adjust a statement's balance or write it off (alone up to the role's limit; above it a second person approves)",
    "ledger.adjust_approve": "Approve or reject other people's balance adjustments",
    "ledger.adjust_reasons": "Edit the clinic's list of adjustment reasons",
    "statements.import": "Import statement files and download their rejected-rows reports",
    "payments.take_phone": "Take a card payment over the phone for a patient's statement",
}

_EVERY_STAFF_MEMBER = frozenset({"dashboard.view", "account.sessions", "account.manage"})

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    Role.PATIENT: frozenset(),
    Role.FRONT_DESK: _EVERY_STAFF_MEMBER | {"payments.view", "patients.view", "refunds.request"},
    Role.BILLING_MANAGER: _EVERY_STAFF_MEMBER
    | {"payments.view", "patients.view", "refunds.request", "refunds.approve", "disputes.manage"}
    | {"statements.import"},
    Role.CLINIC_ADMIN: _EVERY_STAFF_MEMBER
    | {
        "payments.view",
        "patients.view",
        "keys.rotate",
        "staff.manage",
        "refunds.request",
        "refunds.approve",
        "disputes.manage",
        "statements.import",
    },
    Role.COMPLIANCE_OFFICER: _EVERY_STAFF_MEMBER | {"payments.view", "audit.view", "audit.export"},
}

# The clinic settings page (profile, branding, processor keys, policies): clinic admins.
ROLE_PERMISSIONS[Role.CLINIC_ADMIN] = ROLE_PERMISSIONS[Role.CLINIC_ADMIN] | {"settings.manage"}

# Canceling a payment the patient abandoned at 3-D Secure charges and refunds
# nothing: the desk that takes the patient's call may do it.
for _role in (Role.FRONT_DESK, Role.BILLING_MANAGER, Role.CLINIC_ADMIN):
    ROLE_PERMISSIONS[_role] = ROLE_PERMISSIONS[_role] | {"payments.cancel"}

# Balance adjustments (billing.services.adjustments): billing managers and
# clinic admins adjust and approve; clinic admins keep the reason list. The
# front desk does not adjust: a write-off is a billing decision, and the desk
# asks a billing manager (docs/adjustments.md).
ROLE_PERMISSIONS[Role.BILLING_MANAGER] |= {"ledger.adjust", "ledger.adjust_approve"}
ROLE_PERMISSIONS[Role.CLINIC_ADMIN] |= {"ledger.adjust", "ledger.adjust_approve", "ledger.adjust_reasons"}

# Phone payments (billing.services.phone_payments): the people who answer the
# clinic's phone and take payments; not compliance officers, whose work is review.
ROLE_PERMISSIONS[Role.FRONT_DESK] |= {"payments.take_phone"}
ROLE_PERMISSIONS[Role.BILLING_MANAGER] |= {"payments.take_phone"}
ROLE_PERMISSIONS[Role.CLINIC_ADMIN] |= {"payments.take_phone"}

# A platform operator with no membership at a clinic: only the break-glass page
# there. "platform.clinics" guards the platform console, which only the
# platform host serves (require_platform_permission), never a clinic's host.
PLATFORM_OPERATOR_ROLE = "platform_operator"
OPERATOR_PERMISSIONS: frozenset[str] = frozenset({"platform.break_glass", "platform.clinics"})

# A platform operator during a live break-glass grant at the clinic: enough to
# diagnose and to restore the clinic's own admins (unlock, MFA reset), not to
# export the audit trail or rotate keys.
BREAK_GLASS_ROLE = "break_glass"
ROLE_PERMISSIONS[BREAK_GLASS_ROLE] = OPERATOR_PERMISSIONS | {
    "dashboard.view",
    "payments.view",
    "patients.view",
    "audit.view",
    "staff.manage",
}

# Every persona the role x view matrix checks, with what it may do.
ACCESS_ROLES: tuple[str, ...] = (*Role.values, PLATFORM_OPERATOR_ROLE, BREAK_GLASS_ROLE)


def permissions_for_role(role: str) -> frozenset[str]:
    if role == PLATFORM_OPERATOR_ROLE:
        return OPERATOR_PERMISSIONS
    return ROLE_PERMISSIONS.get(role, frozenset())


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


@dataclass(frozen=True)
class StaffAccess:
    """Who the signed-in user is at this clinic, for this request.

    `role` is a Role value, PLATFORM_OPERATOR_ROLE or BREAK_GLASS_ROLE; audit
    events record it as the actor's role.
    """

    role: str
    permissions: frozenset[str]
    membership: Membership | None = None
    grant: BreakGlassGrant | None = None

    @property
    def label(self) -> str:
        if self.role == PLATFORM_OPERATOR_ROLE:
            return "Platform operator"
        if self.role == BREAK_GLASS_ROLE:
            return "Platform operator (emergency access)"
        return str(Role(self.role).label)


def user_is_verified(user: Any) -> bool:
    """True once the user gave a second factor in this session (django-otp's OTPMiddleware)."""
    check = getattr(user, "is_verified", None)
    return bool(check()) if callable(check) else False


def membership_for(request: HttpRequest) -> Membership | None:
    user = request.user
    tenant = getattr(request, "tenant", None)
    if tenant is None or not user.is_authenticated:
        return None
    return Membership.objects.filter(tenant=tenant, user=user, is_active=True).first()


# Where staff_access_for keeps its answer for the rest of the request: the
# session middleware and the view's permission check both ask.
_ACCESS_MEMO_ATTR = "_settle_staff_access"


def staff_access_for(request: HttpRequest) -> StaffAccess | None:
    """The access of the request's user at the request's clinic, or None (also off a clinic's host).

    Computed once per request and user: a sign-in or sign-out during the
    request (a different user) computes it again.
    """
    user = request.user
    memo: tuple[object, StaffAccess | None] | None = getattr(request, _ACCESS_MEMO_ATTR, None)
    if memo is not None and memo[0] == user.pk:
        return memo[1]
    access = _staff_access_resolve(request)
    setattr(request, _ACCESS_MEMO_ATTR, (user.pk, access))
    return access


def _staff_access_resolve(request: HttpRequest) -> StaffAccess | None:
    tenant = getattr(request, "tenant", None)
    if tenant is None:
        return None
    membership = membership_for(request)
    if membership is not None and membership.role != Role.PATIENT:
        return StaffAccess(
            role=membership.role, permissions=permissions_for_role(membership.role), membership=membership
        )
    user = request.user
    if getattr(user, "is_platform_operator", False) and user.is_active:
        from security.breakglass import break_glass_live_grant

        grant = break_glass_live_grant(tenant=tenant, operator=user)
        if grant is not None:
            return StaffAccess(role=BREAK_GLASS_ROLE, permissions=permissions_for_role(BREAK_GLASS_ROLE), grant=grant)
        return StaffAccess(role=PLATFORM_OPERATOR_ROLE, permissions=OPERATOR_PERMISSIONS)
    return None


def mfa_step_redirect(request: HttpRequest) -> HttpResponseRedirect:
    """Send a password-only session to its second-factor step, then back here."""
    return HttpResponseRedirect(f"{reverse('staff:mfa')}?{urlencode({'next': request.get_full_path()})}")


def _guarded(
    permission: str, *, host: str, access_for: Callable[[HttpRequest], StaffAccess | None]
) -> Callable[[ViewFunc], ViewFunc]:
    """The guard both decorators share: host, signed in, second factor, then the permission."""
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")

    def decorator(view: ViewFunc) -> ViewFunc:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            _check_host(request, host)
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not user_is_verified(request.user):
                return mfa_step_redirect(request)
            access = access_for(request)
            if access is None or permission not in access.permissions:
                raise PermissionDenied
            request.access = access  # type: ignore[attr-defined]
            return view(request, *args, **kwargs)

        wrapped.settle_permission = permission  # type: ignore[attr-defined]
        wrapped.settle_public = False  # type: ignore[attr-defined]
        if host == PLATFORM_HOST:
            wrapped.settle_host = PLATFORM_HOST  # type: ignore[attr-defined]
        return wrapped  # type: ignore[return-value]

    return decorator


def require_permission(permission: str) -> Callable[[ViewFunc], ViewFunc]:
    """Declare the permission a tenant staff view needs, and enforce it.

    In order: the clinic's host (else 404), a signed-in user (else the
    sign-in page), a second factor given this session (else the MFA step),
    the permission (else 403). Sets request.access (StaffAccess).
    """
    return _guarded(permission, host=TENANT_HOST, access_for=staff_access_for)


def platform_operator_access(request: HttpRequest) -> StaffAccess | None:
    """The access of the request's user on the platform host: operators only, else None."""
    user = request.user
    if not (user.is_authenticated and user.is_active and getattr(user, "is_platform_operator", False)):
        return None
    return StaffAccess(role=PLATFORM_OPERATOR_ROLE, permissions=OPERATOR_PERMISSIONS)


def require_platform_permission(permission: str) -> Callable[[ViewFunc], ViewFunc]:
    """Declare the permission a platform console view needs, and enforce it.

    As require_permission, but on the platform host: in order, the platform
    host (else 404, so a clinic's host never serves the console), a signed-in
    user (else the sign-in page), a second factor given this session (else
    the MFA step), a platform operator holding the permission (else 403).
    Sets request.access (StaffAccess with PLATFORM_OPERATOR_ROLE).
    """
    return _guarded(permission, host=PLATFORM_HOST, access_for=platform_operator_access)
