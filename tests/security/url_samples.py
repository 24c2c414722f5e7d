"""Concrete URLs for the generated authorisation tests: routes, real ids, personas.

The access matrix, the tenant-isolation proof, the CSRF walk and the MFA walk
all request every route of the URL configuration. A route that takes ids is
made concrete with real objects of one clinic: SAMPLES maps each URL kwarg
name to a function building (once per clinic, see `sample`) an object of that
clinic and returning the id the URL carries. A route whose kwarg has no sample
fails with MissingSample naming the kwarg, so a new id-taking URL cannot slip
through the proofs unnoticed.

Personas are the roles of security.permissions.ACCESS_ROLES plus OUTSIDER
(a signed-up user with no membership) and ANONYMOUS (no session at all).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.test import Client
from django.urls import get_resolver
from django.utils import timezone

from portal.tenancy.context import tenant_scope
from security.models import Role, User
from security.permissions import (
    ACCESS_ROLES,
    BREAK_GLASS_ROLE,
    PLATFORM_HOST,
    PLATFORM_OPERATOR_ROLE,
    permissions_for_role,
)
from tests.conftest import Clinic, login_verified, platform_client
from tests.security.test_headers import _concrete as concrete_with_placeholders
from tests.security.test_headers import _walk as walk_all
from tests.security.test_permission_walk import all_views, declared_access

OUTSIDER = "outsider"
ANONYMOUS = "anonymous"
# Every signed-in persona the matrix checks.
PERSONAS: tuple[str, ...] = (*ACCESS_ROLES, OUTSIDER)

OPERATOR_EMAIL = "operator@platform.example"  # a platform operator who never has a grant
RESPONDER_EMAIL = "responder@platform.example"  # a platform operator with a live grant where asked

_CONVERTER = re.compile(r"<(?:(?P<kind>\w+):)?(?P<name>\w+)>")


class MissingSample(AssertionError):
    """A URL kwarg that url_samples cannot fill with a real id."""


# --------------------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One URL pattern of the configuration, as walked (admin excluded)."""

    route: str  # e.g. "staff/audit/events/<uuid:event_id>/"
    view: Callable[..., Any]
    access: str  # "public" or a permission name

    @property
    def label(self) -> str:
        return "/" + self.route

    @property
    def view_name(self) -> str:
        return f"{self.view.__module__}.{self.view.__name__}"

    @property
    def kwargs(self) -> tuple[str, ...]:
        return tuple(match.group("name") for match in _CONVERTER.finditer(self.route))

    @property
    def is_public(self) -> bool:
        return self.access == "public"

    def path(self, clinic: Clinic) -> str:
        """The route with `clinic`'s own ids in it."""
        return "/" + _CONVERTER.sub(lambda match: str(sample(clinic, self, match.group("name"))), self.route)

    @property
    def on_platform_host(self) -> bool:
        """Served on the platform host: public platform views, and the platform console's guarded views."""
        return self.view_name in PLATFORM_HOST_VIEWS or getattr(self.view, "settle_host", None) == PLATFORM_HOST

    def personas(self) -> list[str]:
        """Who may use the route: the personas holding its permission, or a guest."""
        if self.is_public:
            return [ANONYMOUS]
        return [persona for persona in PERSONAS if self.allowed(persona)]

    def owner(self) -> str:
        """A persona allowed here who owns every per-user sample the route takes."""
        for kwarg in self.kwargs:
            for key in (f"{self.view_name}:{kwarg}", kwarg):
                if key in SAMPLE_OWNERS:
                    return SAMPLE_OWNERS[key]
        return self.personas()[0]

    def allowed(self, persona: str) -> bool:
        """Whether `persona` holds this route's permission (public routes: everyone)."""
        return self.is_public or self.access in permissions_for_role(persona)


def routes() -> list[Route]:
    """Every walked route with the access it declares, each (route, view) once."""
    seen: set[tuple[str, str]] = set()
    found: list[Route] = []
    for route, view in all_views():
        access = declared_access(view)
        assert access is not None, f"/{route} declares no access (see test_permission_walk)"
        key = (route, f"{view.__module__}.{view.__name__}")
        if key not in seen:
            seen.add(key)
            found.append(Route(route=route, view=view, access=access))
    return found


def guarded_routes() -> list[Route]:
    """Routes declared with require_permission (the staff console)."""
    return [route for route in routes() if not route.is_public]


def id_routes() -> list[Route]:
    """Routes that take at least one id."""
    return [route for route in routes() if route.kwargs]


def admin_paths() -> list[str]:
    """Concrete paths of the Django admin's routes (its regex routes have no concrete form).

    The admin guards itself (portal.admin_site) and is outside `routes()`.
    """
    paths = {
        path
        for route in walk_all(get_resolver().url_patterns)
        if route.startswith("admin/") and (path := concrete_with_placeholders(route)) is not None
    }
    assert paths, "the walk found no admin routes"
    return sorted(paths)


# --------------------------------------------------------------------------------------
# Samples: kwarg name -> a real object of the clinic
# --------------------------------------------------------------------------------------

Sample = Callable[[Clinic], object]


def _checkout(clinic: Clinic) -> object:
    from billing.services.checkout import checkout_open

    return checkout_open(tenant=clinic.tenant, statement=clinic.statement)


def _payment(clinic: Clinic) -> object:
    from billing.models import Payment

    checkout = _object(clinic, "checkout_id")
    # One attempt of the checkout, as _claim_attempt writes it before the
    # processor is called (no service creates an attempt without a processor).
    return Payment.objects.create(
        tenant=clinic.tenant,
        checkout=checkout,
        statement=clinic.statement,
        patient=clinic.patient,
        attempt_number=1,
        setup_intent_id=f"seti_{clinic.slug}_sample",
        amount_minor=100,
        currency=clinic.tenant.currency,
    )


def _rotation(clinic: Clinic) -> object:
    from security.crypto.models import KeyPurpose
    from security.crypto.rotation import data_key_rotation_start

    return data_key_rotation_start(tenant=clinic.tenant, purpose=KeyPurpose.PHI)


def _session(clinic: Clinic) -> object:
    """A signed-in session of the clinic's admin (sessions are per user, not per clinic)."""
    from security.models import UserSession

    browser = clinic.client()
    browser.force_login(clinic.user(Role.CLINIC_ADMIN))
    return UserSession.objects.get(session_key=browser.session.session_key)


def _event(clinic: Clinic) -> object:
    from audit.models import AuditEvent
    from audit.recorder import audit_record

    event = AuditEvent.objects.filter(tenant=clinic.tenant).order_by("sequence").first()
    if event is None:
        event = audit_record(action="receipt.viewed", tenant=clinic.tenant, actor_role="guest", target_type="receipt")
    return event


def _verification(clinic: Clinic) -> object:
    from audit.models import AuditVerification

    # As audit.views.verify records a request (the run itself is a task).
    return AuditVerification.objects.create(tenant=clinic.tenant, requested_by=clinic.user(Role.COMPLIANCE_OFFICER))


def _export(clinic: Clinic) -> object:
    from audit.exportformat import Filters
    from audit.services.exports import export_build, export_request

    now = datetime.now(tz=UTC)
    export = export_request(
        tenant=clinic.tenant,
        actor=clinic.user(Role.COMPLIANCE_OFFICER),
        actor_role=Role.COMPLIANCE_OFFICER,
        date_from=now - timedelta(days=1),
        date_to=now + timedelta(days=1),
        filters=Filters(),
    )
    return export_build(export=export)  # ready, so download links can be issued


def _download_token(clinic: Clinic) -> object:
    """A single-use download link issued to the clinic's compliance officer."""
    from audit.services.exports import export_link_create

    officer = clinic.user(Role.COMPLIANCE_OFFICER)
    export = _object(clinic, "export_id")
    return export_link_create(export=export, kind="pdf", user=officer, actor_role=Role.COMPLIANCE_OFFICER)


def _membership(clinic: Clinic) -> object:
    from security.models import Membership

    return Membership.objects.get(tenant=clinic.tenant, user=clinic.user(Role.FRONT_DESK))


def _pending_invitation(clinic: Clinic, *, email: str, days: int) -> tuple[object, str]:
    """A pending invitation to the clinic and its link token (only the token's hash is stored)."""
    from security.invitations import token_hash
    from security.models import StaffInvitation

    token = secrets.token_urlsafe(32)
    invitation = StaffInvitation.objects.create(
        tenant=clinic.tenant,
        email=email,
        role=Role.FRONT_DESK,
        token_hash=token_hash(token),
        invited_by=clinic.user(Role.CLINIC_ADMIN),
        expires_at=timezone.now() + timedelta(days=days),
    )
    return invitation, token


def _invitation(clinic: Clinic) -> object:
    invitation, _ = _pending_invitation(clinic, email=f"invited@{clinic.slug}.example", days=7)
    return invitation


def _invitation_token(clinic: Clinic) -> object:
    """The link token of a pending invitation to the clinic."""
    _, token = _pending_invitation(clinic, email=f"invited-by-link@{clinic.slug}.example", days=3)
    return token


def _reset_token(clinic: Clinic) -> object:
    """The token of a usable password-reset link of the clinic's front desk, issued on its host."""
    from security.recovery import _issue

    with tenant_scope(clinic.tenant):
        _, token = _issue(user=clinic.user(Role.FRONT_DESK), tenant=clinic.tenant, sent_by=None)
    return token


def _refund(clinic: Clinic) -> object:
    """A succeeded refund of a succeeded payment of the clinic (its receipt exists)."""
    from billing.models import Payment
    from billing.refund_models import Refund, RefundReason, RefundStatus

    payment = _object(clinic, "payment_id")
    assert isinstance(payment, Payment)
    with tenant_scope(clinic.tenant):
        return Refund.objects.create(
            tenant=clinic.tenant,
            payment=payment,
            amount_minor=100,
            currency=payment.currency,
            reason=RefundReason.OVERPAYMENT,
            status=RefundStatus.SUCCEEDED,
            requested_by=clinic.user(Role.BILLING_MANAGER),
            requested_role=Role.BILLING_MANAGER.value,
            succeeded_at=timezone.now(),
            receipt_number=f"RF-{secrets.token_hex(4).upper()}",
            processor_refund_id=f"re_sample_{secrets.token_hex(4)}",
        )


def _grant(clinic: Clinic) -> object:
    """The live break-glass grant of the responder (the break_glass persona) at the clinic."""
    from security.models import BreakGlassGrant

    responder = operator_user(RESPONDER_EMAIL)
    return BreakGlassGrant.objects.create(
        tenant=clinic.tenant,
        operator=responder,
        reason="Sample emergency access for the authorisation tests.",
        expires_at=timezone.now() + timedelta(minutes=30),
    )


def _adjustment_reason(clinic: Clinic) -> object:
    """The first of the clinic's seeded adjustment reasons."""
    from billing.services.adjustments import adjustment_reasons_for

    return adjustment_reasons_for(tenant=clinic.tenant)[0]


def _adjustment(clinic: Clinic) -> object:
    """A write-off of the clinic's statement waiting for approval (the front desk's limit is 0)."""
    from billing.adjustment_models import Adjustment, AdjustmentStatus

    return Adjustment.objects.create(
        tenant=clinic.tenant,
        patient=clinic.patient,
        statement=clinic.statement,
        amount_minor=-100,
        currency=clinic.statement.currency,
        reason=_object(clinic, "reason_id"),
        status=AdjustmentStatus.PENDING_APPROVAL,
        requested_by=clinic.user(Role.FRONT_DESK),
        requested_role=Role.FRONT_DESK.value,
    )


def _import_job(clinic: Clinic) -> object:
    """A finished statement import of the clinic with one rejected row (its report downloads)."""
    from billing.services.statement_import import import_job_create, statement_import_run
    from billing.services.statement_import_file import import_file_open

    checked = import_file_open(
        b"statement_number,account_number,first_name,last_name,date_of_birth,statement_date,due_date,amount_due\n"
        b"SAMPLE-1,SAMPLE-ACC,Sam,Sample,1980-01-01,2026-11-02,2026-12-02,not-money\n"
    )
    with tenant_scope(clinic.tenant):
        job = import_job_create(
            tenant=clinic.tenant,
            actor=clinic.user(Role.BILLING_MANAGER),
            actor_role="billing_manager",
            file=checked,
            keep_upload=False,
        )
        return statement_import_run(job=job, file=checked)


def _phone_checkout(clinic: Clinic) -> object:
    """A phone checkout of the clinic's statement, opened by its front desk."""
    from billing.services.phone_payments import phone_checkout_open

    return phone_checkout_open(
        tenant=clinic.tenant,
        statement=clinic.statement,
        actor=clinic.user(Role.FRONT_DESK),
        actor_role=Role.FRONT_DESK.value,
    )


def _phone_payment(clinic: Clinic) -> object:
    """An attempt of the phone checkout, as _claim_attempt writes it before the processor is called."""
    from billing.models import Payment, PaymentChannel

    return Payment.objects.create(
        tenant=clinic.tenant,
        checkout=_object(clinic, "phone_checkout_id"),
        statement=clinic.statement,
        patient=clinic.patient,
        attempt_number=1,
        setup_intent_id=f"seti_{clinic.slug}_phone_sample",
        amount_minor=100,
        currency=clinic.tenant.currency,
        channel=PaymentChannel.PHONE,
    )


def _public_id(kwarg: str) -> Sample:
    return lambda clinic: _object(clinic, kwarg).public_id


# Objects built per clinic, by the kwarg whose id they give.
_OBJECTS: dict[str, Sample] = {
    "checkout_id": _checkout,
    "payment_id": _payment,
    "rotation_id": _rotation,
    "session_id": _session,
    "event_id": _event,
    "verification_id": _verification,
    "export_id": _export,
    "membership_id": _membership,
    "invitation_id": _invitation,
    "grant_id": _grant,
    "refund_id": _refund,
    "reason_id": _adjustment_reason,
    "adjustment_id": _adjustment,
    "job_id": _import_job,
    "phone_checkout_id": _phone_checkout,
    "phone_payment_id": _phone_payment,
}

# URL kwarg name -> the value of that kwarg for one clinic.
SAMPLES: dict[str, Sample] = {
    **{kwarg: _public_id(kwarg) for kwarg in _OBJECTS},
    "tenant_id": lambda clinic: clinic.tenant.public_id,
    "patient_id": lambda clinic: clinic.patient.public_id,
    "statement_id": lambda clinic: clinic.statement.public_id,
    "user_id": lambda clinic: clinic.user(Role.FRONT_DESK).public_id,
}

# Samples that belong to one user, not to the whole clinic: only this persona
# may use them (anyone else gets the same 404 as for another clinic's id).
SAMPLE_OWNERS: dict[str, str] = {
    "session_id": Role.CLINIC_ADMIN.value,
    "grant_id": BREAK_GLASS_ROLE,
    "audit.views.download:token": Role.COMPLIANCE_OFFICER.value,
}

# Public views served on the platform host, not on a clinic's host.
PLATFORM_HOST_VIEWS = frozenset({"billing.views.webhooks.stripe_webhook"})

# (view, kwarg) -> value, for kwarg names that mean different things on
# different views ("token"). Consulted before SAMPLES; "token" has no
# generic sample on purpose, so a new token URL must say what its token is.
VIEW_SAMPLES: dict[tuple[str, str], Sample] = {
    ("audit.views.download", "token"): _download_token,
    ("security.team_views.accept", "token"): _invitation_token,
    ("security.recovery_views.password_reset", "token"): _reset_token,
    # A phone checkout's attempt, not the patient checkout's (another checkout's payment is a 404 there).
    ("billing.views.staff_phone.phone_payment_refresh_view", "payment_id"): _public_id("phone_payment_id"),
}


def sample_for(route: Route, kwarg: str) -> Sample:
    """The sample function for `kwarg` of `route`; MissingSample when there is none."""
    specific = VIEW_SAMPLES.get((route.view_name, kwarg))
    if specific is not None:
        return specific
    if kwarg in SAMPLES:
        return SAMPLES[kwarg]
    raise MissingSample(
        f"no sample for URL kwarg {kwarg!r} of {route.label} ({route.view_name}): add one to "
        "tests/security/url_samples.py (SAMPLES, or VIEW_SAMPLES when the name is ambiguous)"
    )


def _cached(clinic: Clinic, key: str, build: Sample) -> Any:
    cache: dict[str, Any] = clinic.extra.setdefault("url_samples", {})
    if key not in cache:
        with tenant_scope(clinic.tenant):
            cache[key] = build(clinic)
    return cache[key]


def _object(clinic: Clinic, kwarg: str) -> Any:
    return _cached(clinic, f"object:{kwarg}", _OBJECTS[kwarg])


def sample(clinic: Clinic, route: Route, kwarg: str) -> Any:
    """The clinic's own value for `kwarg` of `route`, built once per clinic."""
    build = sample_for(route, kwarg)
    specific = (route.view_name, kwarg) in VIEW_SAMPLES
    return _cached(clinic, f"{route.view_name}:{kwarg}" if specific else kwarg, build)


def value(clinic: Clinic, kwarg: str) -> Any:
    """The clinic's own value for a kwarg that means the same on every view."""
    return _cached(clinic, kwarg, SAMPLES[kwarg])


def missing_samples() -> list[str]:
    """One line per (route, kwarg) of the configuration that has no sample."""
    missing = []
    for route in id_routes():
        for kwarg in route.kwargs:
            try:
                sample_for(route, kwarg)
            except MissingSample as exc:
                missing.append(str(exc))
    return missing


# --------------------------------------------------------------------------------------
# Personas
# --------------------------------------------------------------------------------------


def operator_user(email: str) -> User:
    """A platform operator (staff of the platform, no clinic membership)."""
    from tests.factories import UserFactory

    return UserFactory.create(email=email, full_name="Platform operator", is_platform_operator=True, is_staff=True)


def persona_user(clinic: Clinic, persona: str) -> User | None:
    """The user acting as `persona` at `clinic` (None for ANONYMOUS).

    break_glass is the responder with a live grant at this clinic (the
    grant_id sample); platform_operator is an operator with no grant anywhere.
    """
    if persona == ANONYMOUS:
        return None
    if persona == OUTSIDER:
        from tests.factories import UserFactory

        return UserFactory.create(email="outsider@example.com", full_name="Outsider")
    if persona == PLATFORM_OPERATOR_ROLE:
        return operator_user(OPERATOR_EMAIL)
    if persona == BREAK_GLASS_ROLE:
        grant = _object(clinic, "grant_id")
        return grant.operator
    return clinic.user(persona)


def persona_client(clinic: Clinic, persona: str, **extra: Any) -> Client:
    """A client on `clinic`'s host signed in as `persona` with both factors (anonymous: none)."""
    client = clinic.client(**extra)
    user = persona_user(clinic, persona)
    if user is not None:
        login_verified(client, user)
    return client


def host_client(clinic: Clinic, route: Route) -> Client:
    """An anonymous client on the host that serves `route`: the clinic's, or the platform's."""
    return platform_client() if route.on_platform_host else clinic.client()


def route_client(clinic: Clinic, route: Route, persona: str) -> Client:
    """A client on the host that serves `route`, signed in as `persona` with both factors.

    On the platform host the persona is the same person as at the clinic
    (the platform operator personas are operators there too); the clinic's
    ids are still the samples the route's URL carries.
    """
    if not route.on_platform_host:
        return persona_client(clinic, persona)
    client = platform_client()
    user = persona_user(clinic, persona)
    if user is not None:
        login_verified(client, user)
    return client


def guest_client(clinic: Clinic, *holding: Clinic, **extra: Any) -> Client:
    """An anonymous browser on `clinic`'s host whose session opened the checkouts of `holding`.

    Checkouts are bound to the session that opened them (billing.access); a
    browser holding another clinic's checkout shows that the tenant wall, not
    only the session wall, keeps that checkout off this clinic's host.
    """
    from billing.access import SESSION_CHECKOUTS

    client = clinic.client(**extra)
    session = client.session
    session[SESSION_CHECKOUTS] = [str(value(other, "checkout_id")) for other in holding]
    session.save()
    return client
