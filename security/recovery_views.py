"""Staff password recovery pages: ask for a link, open it, set a new password.

The link's token never stays in the address bar: opening it stores the
token's hash in the session and redirects to the same route with
RESET_PLACEHOLDER, so the token is not sent on in a Referer or kept in the
history (as Django's own password reset does).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from security.auth_views import locked_out
from security.passwords import MAX_LENGTH as PASSWORD_MAX_LENGTH
from security.permissions import ANY_HOST, public_view
from security.recovery import (
    LINK_UNUSABLE_MESSAGE,
    RESET_LIFETIME,
    PasswordResetError,
    password_reset_complete,
    password_reset_lookup,
    password_reset_open,
    password_reset_request,
    reset_links_locked,
)

RESET_PLACEHOLDER = "set"
RESET_SESSION_KEY = "settle_password_reset"


class ForgotPasswordForm(forms.Form):
    email = forms.EmailField(
        label="Email",
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "username", "autofocus": True}),
    )


class NewPasswordForm(forms.Form):
    password = forms.CharField(
        label="New password",
        max_length=PASSWORD_MAX_LENGTH,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password", "autofocus": True}),
        help_text="At least 12 characters, with letters and digits. Not a common or breached password.",
    )
    password_confirm = forms.CharField(
        label="New password again",
        max_length=PASSWORD_MAX_LENGTH,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        first, second = cleaned.get("password"), cleaned.get("password_confirm")
        if first and second and first != second:
            self.add_error("password_confirm", "The two passwords differ. Type the same password twice.")
        return cleaned


@public_view(host=ANY_HOST)
@sensitive_post_parameters("email")
@never_cache
@require_http_methods(["GET", "POST"])
def password_forgot(request: HttpRequest) -> HttpResponse:
    """ "Forgot password": one answer for every address (security.recovery)."""
    form = ForgotPasswordForm(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        if form.is_valid():
            password_reset_request(request=request, email=form.cleaned_data["email"])
            minutes = int(RESET_LIFETIME.total_seconds() // 60)
            return render(request, "security/password_forgot_sent.html", {"minutes": minutes})
        return render(request, "security/password_forgot.html", {"form": form}, status=400)
    return render(request, "security/password_forgot.html", {"form": form})


def _unusable(request: HttpRequest) -> HttpResponse:
    request.session.pop(RESET_SESSION_KEY, None)
    context = {"message": LINK_UNUSABLE_MESSAGE}
    # 404 for every reason alike, as for another clinic's id anywhere (DESIGN.md, Tenancy).
    return render(request, "security/password_reset_unusable.html", context, status=404)


@public_view(host=ANY_HOST)
@sensitive_post_parameters("password", "password_confirm")
@never_cache
@require_http_methods(["GET", "POST"])
def password_reset(request: HttpRequest, token: str) -> HttpResponse:
    """Open a reset link, then set the new password (the session holds the link's hash)."""
    if reset_links_locked(request):
        return locked_out(request)
    if token != RESET_PLACEHOLDER:
        hashed = password_reset_open(request=request, token=token)
        if hashed is None:
            return locked_out(request) if reset_links_locked(request) else _unusable(request)
        request.session[RESET_SESSION_KEY] = hashed
        return HttpResponseRedirect(reverse("staff:password-reset", kwargs={"token": RESET_PLACEHOLDER}))
    hashed = request.session.get(RESET_SESSION_KEY)
    reset = password_reset_lookup(request=request, hashed=hashed) if isinstance(hashed, str) else None
    if reset is None:
        return _unusable(request)
    form = NewPasswordForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            password_reset_complete(request=request, hashed=reset.token_hash, password=form.cleaned_data["password"])
        except PasswordResetError:
            return _unusable(request)
        except ValidationError as error:
            form.add_error("password", error)
        else:
            request.session.pop(RESET_SESSION_KEY, None)
            messages.success(
                request,
                "Your password was changed and every session of your account was signed out. "
                "Sign in with the new password and a code from your authenticator app.",
            )
            return redirect("staff:login")
    status = 400 if request.method == "POST" else 200
    context = {"form": form, "email": reset.user.email}
    return render(request, "security/password_reset.html", context, status=status)
