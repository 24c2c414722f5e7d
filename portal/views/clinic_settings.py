"""The clinic settings page: one page per section, for clinic admins (settings.manage).

Sections are a small registry (SECTIONS): each names its URL, template,
the audit actions that are its history, and a function building its
context. A later policy (refund approval thresholds, reminder cadence, quiet
hours, alert thresholds) adds a section here with its own views, form and
template; the overview, the navigation and "recent changes" pick it up.

Views are thin: validate the form, call one service, redirect (POST/GET).
A refused value re-renders the section with the message on its field and
status 400; nothing is saved.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from billing.services.approval_limits import LIMIT_FIELDS, ApprovalLimitsError, approval_limits_update
from billing.services.branding import LOGO_MAX_BYTES, BrandingError, branding_set, contrast_with_white
from billing.services.clinic_settings import (
    ClinicPolicies,
    ClinicProfile,
    SettingsChange,
    clinic_policies,
    clinic_policies_update,
    clinic_profile,
    clinic_profile_update,
    settings_recent_changes,
)
from billing.services.processor_accounts import (
    ProcessorSettingsError,
    processor_keys_set,
    processor_status,
    processor_webhook_register,
    processor_webhook_secret_set,
)
from portal.models import Tenant
from portal.money import Money
from portal.views.clinic_settings_forms import (
    BrandingForm,
    PoliciesForm,
    ProcessorKeysForm,
    ProfileForm,
    WebhookSecretForm,
)
from portal.views.settings_approvals import ApprovalLimitsForm, approvals_context
from security.models import User
from security.permissions import require_permission

PERMISSION = "settings.manage"


@dataclass(frozen=True)
class SettingsSection:
    key: str
    title: str
    url_name: str
    template: str
    # The overview's card for this section (current values, no forms).
    summary_template: str
    # The audit actions that are this section's history.
    actions: tuple[str, ...]
    # Current values and unbound forms for the section's page and overview card.
    context: Callable[[Tenant], dict[str, Any]]


def _profile_context(tenant: Tenant) -> dict[str, Any]:
    profile = clinic_profile(tenant=tenant)
    return {"profile": profile, "profile_form": ProfileForm(initial=vars(profile))}


def _branding_context(tenant: Tenant) -> dict[str, Any]:
    return {
        "brand_contrast": f"{int(contrast_with_white(tenant.brand_colour) * 100) / 100:.2f}",
        "branding_form": BrandingForm(initial={"brand_colour": tenant.brand_colour}),
        "logo_max_kb": LOGO_MAX_BYTES // 1024,
    }


def _processor_context(tenant: Tenant) -> dict[str, Any]:
    status = processor_status(tenant=tenant)
    initial = {"publishable_key": status.account.publishable_key} if status.account is not None else {}
    return {"processor": status, "keys_form": ProcessorKeysForm(initial=initial), "webhook_form": WebhookSecretForm()}


def _policies_context(tenant: Tenant) -> dict[str, Any]:
    policies = clinic_policies(tenant=tenant)
    minimum = Money(policies.minimum_payment_minor, tenant.currency)
    initial = {**vars(policies), "minimum_payment": minimum.input_value()}
    return {
        "policies": policies,
        "minimum_payment": minimum,
        "policies_form": PoliciesForm(initial=initial, tenant=tenant),
    }


def _section(
    key: str, title: str, actions: tuple[str, ...], context: Callable[[Tenant], dict[str, Any]]
) -> SettingsSection:
    """A section whose URL is clinic_settings:<key> and templates portal/settings/<key>.html and summary_<key>.html."""
    return SettingsSection(
        key=key,
        title=title,
        url_name=f"clinic_settings:{key}",
        template=f"portal/settings/{key}.html",
        summary_template=f"portal/settings/summary_{key}.html",
        actions=actions,
        context=context,
    )


SECTIONS: list[SettingsSection] = [
    _section("profile", "Profile and support", ("settings.profile_changed",), _profile_context),
    _section("branding", "Branding", ("settings.branding_changed",), _branding_context),
    _section(
        "processor",
        "Payments processor",
        ("settings.processor_keys_changed", "settings.webhook_registered", "settings.webhook_secret_changed"),
        _processor_context,
    ),
    _section("policies", "Policies", ("settings.policies_changed",), _policies_context),
    _section("approvals", "Approvals", ("settings.approval_limits_changed",), approvals_context),
]


def section(key: str) -> SettingsSection:
    return next(s for s in SECTIONS if s.key == key)


def _section_of(change: SettingsChange) -> SettingsSection | None:
    return next((s for s in SECTIONS if change.event.action in s.actions), None)


def _actor(request: HttpRequest) -> dict[str, Any]:
    """The actor keywords every settings service takes."""
    return {
        "tenant": request.tenant,  # type: ignore[attr-defined]
        "actor": cast(User, request.user),
        "actor_role": request.access.role,  # type: ignore[attr-defined]
        "request": request,
    }


def _page(request: HttpRequest, key: str, *, status: int = 200, **forms: Any) -> HttpResponse:
    """A section's page; `forms` replace its unbound forms (a bound form with errors)."""
    tenant: Tenant = request.tenant  # type: ignore[attr-defined]
    current = section(key)
    recent = settings_recent_changes(tenant=tenant, limit=50)
    changes = [(c, current) for c in recent if c.event.action in current.actions][:10]
    context = {**current.context(tenant), **forms, "sections": SECTIONS, "section": current, "changes": changes}
    return render(request, current.template, context, status=status)


def _refused(form: Any, error: ProcessorSettingsError | BrandingError | ValidationError) -> None:
    field = getattr(error, "field", None)
    form.add_error(
        field if field in form.fields else None, error.messages if isinstance(error, ValidationError) else str(error)
    )


def _saved(request: HttpRequest, changed: list[str], what: str) -> None:
    if changed:
        messages.success(request, f"{what} saved.")
    else:
        messages.info(request, "Nothing changed.")


# --- Overview ----------------------------------------------------------------------------


@require_permission(PERMISSION)
@never_cache
@require_http_methods(["GET"])
def overview(request: HttpRequest) -> HttpResponse:
    """Every section's current values, with the latest changes."""
    tenant: Tenant = request.tenant  # type: ignore[attr-defined]
    cards = [(s, s.context(tenant)) for s in SECTIONS]
    changes = [(c, _section_of(c)) for c in settings_recent_changes(tenant=tenant)]
    return render(request, "portal/settings/overview.html", {"sections": SECTIONS, "cards": cards, "changes": changes})


# --- Profile -----------------------------------------------------------------------------


@require_permission(PERMISSION)
@never_cache
@require_http_methods(["GET", "POST"])
def profile(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _page(request, "profile")
    form = ProfileForm(request.POST)
    if not form.is_valid():
        return _page(request, "profile", status=400, profile_form=form)
    try:
        changed = clinic_profile_update(**_actor(request), profile=ClinicProfile(**form.cleaned_data))
    except ValidationError as error:
        _refused(form, error)
        return _page(request, "profile", status=400, profile_form=form)
    _saved(request, changed, "Profile")
    return redirect("clinic_settings:profile")


# --- Branding ----------------------------------------------------------------------------


@require_permission(PERMISSION)
@never_cache
@require_http_methods(["GET", "POST"])
def branding(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _page(request, "branding")
    form = BrandingForm(request.POST, request.FILES)
    if not form.is_valid():
        return _page(request, "branding", status=400, branding_form=form)
    try:
        changed = branding_set(
            **_actor(request),
            brand_colour=form.cleaned_data["brand_colour"],
            logo=form.cleaned_data["logo"],
            remove_logo=form.cleaned_data["remove_logo"],
        )
    except BrandingError as error:
        _refused(form, error)
        return _page(request, "branding", status=400, branding_form=form)
    _saved(request, changed, "Branding")
    return redirect("clinic_settings:branding")


# --- Processor ---------------------------------------------------------------------------


@require_permission(PERMISSION)
@never_cache
@sensitive_post_parameters("secret_key")
@require_http_methods(["GET", "POST"])
def processor(request: HttpRequest) -> HttpResponse:
    """The keys form. Saving good keys also registers the webhook endpoint when none is set."""
    if request.method != "POST":
        return _page(request, "processor")
    form = ProcessorKeysForm(request.POST)
    if not form.is_valid():
        return _page(request, "processor", status=400, keys_form=form)
    actor = _actor(request)
    before = processor_status(tenant=actor["tenant"])
    try:
        account = processor_keys_set(**actor, **form.cleaned_data)
    except ProcessorSettingsError as error:
        _refused(form, error)
        return _page(request, "processor", status=400, keys_form=form)
    mode = "live" if account.livemode else "test"
    messages.success(request, f"Stripe accepted the keys ({mode} mode). They are saved.")
    # A first connection, or a switch of mode (another Stripe endpoint list),
    # needs its own endpoint; otherwise the one registered stays.
    if not account.webhook_secret or (before.connected and before.mode != mode):
        _webhook_register(request, actor)
    else:
        messages.info(
            request,
            "The webhook is unchanged. If these keys belong to another Stripe account, register the endpoint again.",
        )
    return redirect("clinic_settings:processor")


def _webhook_register(request: HttpRequest, actor: dict[str, Any]) -> None:
    try:
        registered = processor_webhook_register(**actor)
    except ProcessorSettingsError as error:
        messages.error(request, str(error))
        return
    if registered is None:
        messages.warning(
            request, "Stripe's API could not register the webhook here. Add it by hand with the steps below."
        )
    else:
        messages.success(request, "The webhook endpoint is registered with Stripe and its signing secret is saved.")


@require_permission(PERMISSION)
@never_cache
@require_POST
def webhook_register(request: HttpRequest) -> HttpResponse:
    """Register (again) the clinic's webhook endpoint through the processor's API."""
    _webhook_register(request, _actor(request))
    return redirect("clinic_settings:processor")


@require_permission(PERMISSION)
@never_cache
@sensitive_post_parameters("webhook_secret")
@require_POST
def webhook_secret(request: HttpRequest) -> HttpResponse:
    """Keep the signing secret of an endpoint the admin registered by hand."""
    form = WebhookSecretForm(request.POST)
    if not form.is_valid():
        return _page(request, "processor", status=400, webhook_form=form)
    try:
        processor_webhook_secret_set(**_actor(request), webhook_secret=form.cleaned_data["webhook_secret"])
    except ProcessorSettingsError as error:
        _refused(form, error)
        return _page(request, "processor", status=400, webhook_form=form)
    messages.success(request, "Webhook signing secret saved.")
    return redirect("clinic_settings:processor")


# --- Policies ----------------------------------------------------------------------------


@require_permission(PERMISSION)
@never_cache
@require_http_methods(["GET", "POST"])
def policies(request: HttpRequest) -> HttpResponse:
    tenant: Tenant = request.tenant  # type: ignore[attr-defined]
    if request.method != "POST":
        return _page(request, "policies")
    form = PoliciesForm(request.POST, tenant=tenant)
    if not form.is_valid():
        return _page(request, "policies", status=400, policies_form=form)
    data = form.cleaned_data
    values = ClinicPolicies(
        minimum_payment_minor=data["minimum_payment"],
        lookup_statement_failure_limit=data["lookup_statement_failure_limit"],
        lookup_lockout_minutes=data["lookup_lockout_minutes"],
        lookup_ip_failure_limit=data["lookup_ip_failure_limit"],
        card_check_policy=data["card_check_policy"],
    )
    try:
        changed = clinic_policies_update(**_actor(request), policies=values)
    except ValueError as error:
        form.add_error(None, str(error).capitalize() + ".")
        return _page(request, "policies", status=400, policies_form=form)
    _saved(request, changed, "Policies")
    return redirect("clinic_settings:policies")


# --- Approvals ----------------------------------------------------------------------------


@require_permission(PERMISSION)
@never_cache
@require_http_methods(["GET", "POST"])
def approvals(request: HttpRequest) -> HttpResponse:
    """How much each role may refund or adjust alone; above it a second person approves."""
    tenant: Tenant = request.tenant  # type: ignore[attr-defined]
    if request.method != "POST":
        return _page(request, "approvals")
    form = ApprovalLimitsForm(request.POST, tenant=tenant)
    if not form.is_valid():
        return _page(request, "approvals", status=400, approvals_form=form)
    limits = {name: form.cleaned_data[name] for name in LIMIT_FIELDS}
    try:
        changed = approval_limits_update(**_actor(request), limits=limits)
    except ApprovalLimitsError as error:
        form.add_error(None, str(error).capitalize() + ".")
        return _page(request, "approvals", status=400, approvals_form=form)
    _saved(request, changed, "Approval limits")
    return redirect("clinic_settings:approvals")
