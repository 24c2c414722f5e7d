"""The break-glass page: a platform operator starts or ends emergency access to this clinic.

Both views need platform.break_glass, which only platform operators hold
(with or without a live grant), on the clinic's host, signed in with both
factors. Business rules live in security.breakglass; these views read the
form, call one service, and redirect (POST/redirect/GET). Refused input
re-renders the page with the reason and status 400, nothing created.
"""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from security.breakglass import (
    ALLOWED_DURATIONS,
    REASON_MAX_LENGTH,
    REASON_MIN_LENGTH,
    BreakGlassError,
    access_grant_by_uuid,
    break_glass_end,
    break_glass_permission_labels,
    break_glass_start,
    minutes_left,
)
from security.models import User
from security.permissions import require_permission

REASON_MESSAGE = (
    f"Give a reason of at least {REASON_MIN_LENGTH} characters: what happened, and why you need access "
    "to this clinic. The clinic's admins will read it."
)


class StartForm(forms.Form):
    """Shape checks only; security.breakglass enforces the same rules for every caller."""

    reason = forms.CharField(
        label="Reason",
        min_length=REASON_MIN_LENGTH,
        max_length=REASON_MAX_LENGTH,
        help_text=(
            f"{REASON_MIN_LENGTH} to {REASON_MAX_LENGTH} characters: the incident or ticket, and what you need to do. "
            "Sent to the clinic's admins as written; no patient details."
        ),
        error_messages={"required": REASON_MESSAGE, "min_length": REASON_MESSAGE},
        widget=forms.Textarea(attrs={"rows": 5}),
    )
    minutes = forms.TypedChoiceField(
        label="Duration",
        coerce=int,
        choices=[(m, f"{m} minutes") for m in ALLOWED_DURATIONS],
        initial=ALLOWED_DURATIONS[0],
        help_text="Access ends by itself at the end of this time. You can end it sooner.",
        error_messages={"required": "Choose how long you need.", "invalid_choice": "Choose one of the durations."},
    )


def _operator(request: HttpRequest) -> User:
    return cast(User, request.user)


def _start_page(
    request: HttpRequest, *, form: StartForm | None = None, error: str = "", status: int = 200
) -> HttpResponse:
    """The live grant with time left and an End button, or the form to start one."""
    grant = request.access.grant  # type: ignore[attr-defined]
    context: dict[str, Any] = {
        "grant": grant,
        "minutes_left": minutes_left(grant) if grant is not None else 0,
        "form": form or StartForm(),
        "error": error,
        "abilities": break_glass_permission_labels(),
    }
    return render(request, "security/breakglass/start.html", context, status=status)


@require_permission("platform.break_glass")
@require_http_methods(["GET", "POST"])
def start(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _start_page(request)
    form = StartForm(request.POST)
    if not form.is_valid():
        return _start_page(request, form=form, status=400)
    try:
        break_glass_start(
            request=request,
            tenant=request.tenant,  # type: ignore[attr-defined]
            operator=_operator(request),
            reason=form.cleaned_data["reason"],
            minutes=form.cleaned_data["minutes"],
        )
    except BreakGlassError as refused:
        if refused.field in form.fields:
            form.add_error(refused.field, str(refused))
            return _start_page(request, form=form, status=400)
        return _start_page(request, form=form, error=str(refused), status=400)
    messages.warning(
        request,
        f"Emergency access started for {form.cleaned_data['minutes']} minutes. The clinic's admins have been "
        "emailed, and everything you do here is audited.",
    )
    return redirect("staff:dashboard")


@require_permission("platform.break_glass")
@require_POST
def end(request: HttpRequest, grant_id: UUID) -> HttpResponse:
    grant = access_grant_by_uuid(tenant=request.tenant, operator=_operator(request), uuid=grant_id)  # type: ignore[attr-defined]
    try:
        break_glass_end(request=request, grant=grant)
    except BreakGlassError as refused:
        return _start_page(request, error=str(refused), status=400)
    messages.success(request, "Emergency access ended. The clinic's admins have been emailed.")
    return redirect("breakglass:start")
