"""The platform console: clinics on the platform host, for platform operators (platform.clinics).

Every view is wrapped in require_platform_permission: the platform host
only (a clinic's host answers 404), a signed-in platform operator who gave
a second factor this session. Writes go through security.clinics and
security.domains (each audited in the platform chain); bad input re-renders
the form with the messages tied to their fields and status 400, nothing
saved. Clinics are fetched by public id (access_clinic_by_uuid, 404 for an
unknown id).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing.figures import RECENT_DAYS, clinic_figures
from billing.services.processor_accounts import tenant_webhook_url
from portal.models import Tenant
from portal.tenancy.resolution import tenant_base_url
from portal.views.platform_forms import AdminInviteForm, ClinicCreateForm, ClinicProfileForm, SuspendForm
from security.clinics import (
    EDITABLE_FIELDS,
    ClinicInvalid,
    ClinicProfile,
    ClinicStateError,
    access_clinic_by_uuid,
    clinic_admin_invite,
    clinic_create,
    clinic_invitations_pending,
    clinic_reactivate,
    clinic_staff_counts,
    clinic_suspend,
    clinic_update,
    clinics_all,
)
from security.domains import CHECK_MESSAGES, DomainCheck, clinic_domain_verify, verification_record_name
from security.permissions import require_platform_permission


def _add_errors(form: forms.Form, invalid: ClinicInvalid) -> None:
    for field, problems in invalid.errors.items():
        for problem in problems:
            form.add_error(field if field in form.fields else None, problem)


def _profile(data: dict[str, Any]) -> ClinicProfile:
    return ClinicProfile(
        name=data["name"],
        timezone=data["timezone"],
        support_phone=data["support_phone"],
        support_email=data["support_email"],
        custom_domain=data["custom_domain"],
    )


def _status(tenant: Tenant) -> list[tuple[str, str]]:
    """(label, pill class) of the clinic's states, for the list and the clinic's page."""
    found: list[tuple[str, str]] = []
    if not tenant.is_active:
        found.append(("Disabled", "pill"))
    elif tenant.suspended_at is not None:
        found.append(("Suspended", "pill-canceled"))
    else:
        found.append(("Active", "pill-succeeded"))
    if tenant.custom_domain and tenant.custom_domain_verified_at is None:
        found.append(("Domain pending", "pill-warn"))
    return found


@require_platform_permission("platform.clinics")
@require_GET
def clinics(request: HttpRequest) -> HttpResponse:
    tenants = clinics_all()
    figures = clinic_figures(tenants=tenants)
    staff = clinic_staff_counts(tenants=tenants)
    rows = [
        {"tenant": tenant, "status": _status(tenant), "figures": figures[tenant.pk], "staff": staff.get(tenant.pk, 0)}
        for tenant in tenants
    ]
    return render(request, "portal/platform/clinics.html", {"rows": rows, "recent_days": RECENT_DAYS})


@require_platform_permission("platform.clinics")
@require_http_methods(["GET", "POST"])
def clinic_new(request: HttpRequest) -> HttpResponse:
    form = ClinicCreateForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            tenant, invitation = clinic_create(
                actor=request.user,  # type: ignore[arg-type]
                slug=data["slug"],
                currency=data["currency"],
                profile=_profile(data),
                admin_email=data["admin_email"],
                request=request,
            )
        except ClinicInvalid as invalid:
            _add_errors(form, invalid)
        else:
            note = f" An invitation was sent to {invitation.email}." if invitation else ""
            messages.success(request, f"{tenant.name} is on the platform.{note}")
            return redirect("platform:clinic", tenant_id=tenant.public_id)
    status = 400 if request.method == "POST" else 200
    return render(request, "portal/platform/clinic_form.html", {"form": form, "creating": True}, status=status)


def _detail(request: HttpRequest, tenant: Tenant, *, status: int = 200, **forms_: forms.Form) -> HttpResponse:
    figures = clinic_figures(tenants=[tenant])[tenant.pk]
    context = {
        "clinic": tenant,
        "status": _status(tenant),
        "figures": figures,
        "recent_days": RECENT_DAYS,
        "staff_count": clinic_staff_counts(tenants=[tenant]).get(tenant.pk, 0),
        "site_url": tenant_base_url(tenant),
        "webhook_url": tenant_webhook_url(tenant),
        "record_name": verification_record_name(tenant.custom_domain) if tenant.custom_domain else "",
        "invitations": clinic_invitations_pending(tenant=tenant),
        "invite_form": forms_.get("invite_form") or AdminInviteForm(),
        "suspend_form": forms_.get("suspend_form") or SuspendForm(),
    }
    return render(request, "portal/platform/clinic.html", context, status=status)


@require_platform_permission("platform.clinics")
@require_GET
def clinic(request: HttpRequest, tenant_id: UUID) -> HttpResponse:
    return _detail(request, access_clinic_by_uuid(uuid=tenant_id))


@require_platform_permission("platform.clinics")
@require_http_methods(["GET", "POST"])
def clinic_edit(request: HttpRequest, tenant_id: UUID) -> HttpResponse:
    tenant = access_clinic_by_uuid(uuid=tenant_id)
    initial = {field: getattr(tenant, field) or "" for field in EDITABLE_FIELDS}
    form = ClinicProfileForm(request.POST if request.method == "POST" else None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            changed = clinic_update(
                actor=request.user,  # type: ignore[arg-type]
                tenant=tenant,
                profile=_profile(form.cleaned_data),
                request=request,
            )
        except ClinicInvalid as invalid:
            _add_errors(form, invalid)
        else:
            if "custom_domain" in changed and form.cleaned_data["custom_domain"]:
                messages.success(request, "Saved. Publish the new DNS record below, then check the domain.")
            else:
                messages.success(request, "Saved." if changed else "Nothing changed.")
            return redirect("platform:clinic", tenant_id=tenant.public_id)
    status = 400 if request.method == "POST" else 200
    context = {"form": form, "creating": False, "clinic": tenant}
    return render(request, "portal/platform/clinic_form.html", context, status=status)


@require_platform_permission("platform.clinics")
@require_POST
def clinic_suspend_view(request: HttpRequest, tenant_id: UUID) -> HttpResponse:
    tenant = access_clinic_by_uuid(uuid=tenant_id)
    form = SuspendForm(request.POST)
    if form.is_valid():
        try:
            clinic_suspend(actor=request.user, tenant=tenant, reason=form.cleaned_data["reason"], request=request)  # type: ignore[arg-type]
        except ClinicInvalid as invalid:
            _add_errors(form, invalid)
        except ClinicStateError as error:
            messages.error(request, str(error))
            return redirect("platform:clinic", tenant_id=tenant.public_id)
        else:
            messages.success(request, f"{tenant.name} is suspended. Its pages now say it is temporarily unavailable.")
            return redirect("platform:clinic", tenant_id=tenant.public_id)
    return _detail(request, tenant, status=400, suspend_form=form)


@require_platform_permission("platform.clinics")
@require_POST
def clinic_reactivate_view(request: HttpRequest, tenant_id: UUID) -> HttpResponse:
    tenant = access_clinic_by_uuid(uuid=tenant_id)
    try:
        clinic_reactivate(actor=request.user, tenant=tenant, request=request)  # type: ignore[arg-type]
    except ClinicStateError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"{tenant.name} is active again.")
    return redirect("platform:clinic", tenant_id=tenant.public_id)


@require_platform_permission("platform.clinics")
@require_POST
def clinic_domain_verify_view(request: HttpRequest, tenant_id: UUID) -> HttpResponse:
    tenant = access_clinic_by_uuid(uuid=tenant_id)
    result = clinic_domain_verify(tenant=tenant, actor=request.user, actor_role="platform_operator", request=request)
    message = CHECK_MESSAGES[result].format(record=verification_record_name(tenant.custom_domain or ""))
    (messages.success if result == DomainCheck.VERIFIED else messages.error)(request, message)
    return redirect("platform:clinic", tenant_id=tenant.public_id)


@require_platform_permission("platform.clinics")
@require_POST
def clinic_invite_view(request: HttpRequest, tenant_id: UUID) -> HttpResponse:
    tenant = access_clinic_by_uuid(uuid=tenant_id)
    form = AdminInviteForm(request.POST)
    if form.is_valid():
        try:
            invitation = clinic_admin_invite(
                actor=request.user,  # type: ignore[arg-type]
                tenant=tenant,
                email=form.cleaned_data["admin_email"],
                request=request,
            )
        except ClinicInvalid as invalid:
            _add_errors(form, invalid)
        else:
            messages.success(request, f"Invitation sent to {invitation.email}.")
            return redirect("platform:clinic", tenant_id=tenant.public_id)
    return _detail(request, tenant, status=400, invite_form=form)
