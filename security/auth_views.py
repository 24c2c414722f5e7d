"""Signing in, the second factor, signing out, and one's own account.

Sign-in has two steps. The password step (`login`) signs the user in
without a second factor; every staff page (security.permissions) then sends
the session to the MFA step (`mfa`), or to enrolment (`mfa_enrol`) when no
authenticator is set up yet. These views serve clinic hosts and the
platform host alike (Django admin signs in here too).

Lockout (django-axes): a locked account or IP gets `locked_out`'s page, for
a wrong password, a wrong code, and a right one alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth import logout as auth_logout
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from security.account import password_change_complete
from security.mfa import (
    MAX_CODE_LENGTH,
    MfaError,
    MfaLockedError,
    mfa_enrolled,
    mfa_enrolment_begin,
    mfa_enrolment_confirm,
    mfa_verify,
    recovery_codes_regenerate,
    recovery_codes_remaining,
)
from security.permissions import (
    ANY_HOST,
    PLATFORM_OPERATOR_ROLE,
    public_view,
    require_permission,
    staff_access_for,
    user_is_verified,
)

LOCKED_MESSAGE = (
    "Too many failed sign-in attempts. For your security, signing in is locked for "
    "{minutes} minutes. A clinic admin can unlock your account sooner."
)


def _requested_next(request: HttpRequest) -> str:
    """The `next` the request carries, when it stays on this host; else ""."""
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return ""


def _next_url(request: HttpRequest) -> str:
    """Where to go once signed in: the requested page, else this user's home on this host."""
    requested = _requested_next(request)
    if requested:
        return requested
    if getattr(request, "tenant", None) is None:
        # The platform host: operators land in the platform console.
        return reverse("platform:clinics")
    access = staff_access_for(request) if request.user.is_authenticated else None
    if access is not None and access.role == PLATFORM_OPERATOR_ROLE:
        # An operator without a grant here may use only the break-glass page.
        return reverse("breakglass:start")
    return reverse(settings.LOGIN_REDIRECT_URL)


def _with_next(url_name: str, next_url: str) -> HttpResponseRedirect:
    if not next_url:
        return HttpResponseRedirect(reverse(url_name))
    return HttpResponseRedirect(f"{reverse(url_name)}?{urlencode({'next': next_url})}")


def locked_out(request: HttpRequest, original_response: Any = None, credentials: Any = None) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: the same page for every locked account or IP, known or not."""
    if request.user.is_authenticated:
        # A half-signed-in session (password given, code not) ends here.
        auth_logout(request)
    message = LOCKED_MESSAGE.format(minutes=settings.SETTLE_LOCKOUT_MINUTES)
    return render(request, "security/locked_out.html", {"message": message}, status=429)


class SignInForm(AuthenticationForm):
    username = forms.EmailField(label="Email", max_length=254, widget=forms.EmailInput(attrs={"autofocus": True}))
    error_messages = {
        # One message for unknown email, wrong password and inactive account alike.
        "invalid_login": "That email and password do not match an account. Check both and try again.",
        "inactive": "That email and password do not match an account. Check both and try again.",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["password"].max_length = 256  # type: ignore[attr-defined]
        self.fields["username"].widget.attrs["autocomplete"] = "username"


@public_view(host=ANY_HOST)
@sensitive_post_parameters("password")
@never_cache
@require_http_methods(["GET", "POST"])
def login(request: HttpRequest) -> HttpResponse:
    next_url = _requested_next(request)
    if request.user.is_authenticated:
        if user_is_verified(request.user):
            return HttpResponseRedirect(_next_url(request))
        return _with_next("staff:mfa", next_url)
    form = SignInForm(request, data=request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        auth_login(request, form.get_user())
        step = "staff:mfa" if mfa_enrolled(form.get_user()) else "staff:mfa-enrol"
        return _with_next(step, next_url)
    status = 400 if request.method == "POST" else 200
    return render(request, "security/login.html", {"form": form, "next": next_url}, status=status)


class CodeForm(forms.Form):
    otp_token = forms.CharField(
        label="Code",
        max_length=MAX_CODE_LENGTH,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )


@dataclass
class CodeStep:
    """The outcome of posting a code: a response to return, or the form to show again."""

    form: CodeForm
    status: int = 200
    response: HttpResponse | None = None


def _code_step(request: HttpRequest, accept: Callable[[str], HttpResponse]) -> CodeStep:
    """Validate the posted code and hand it to `accept`; a wrong code goes back on the form.

    `accept` raises MfaError for a wrong code (the message is shown) and
    MfaLockedError when the account or IP is locked (the lockout page).
    """
    form = CodeForm(request.POST if request.method == "POST" else None)
    if request.method != "POST":
        return CodeStep(form=form)
    if form.is_valid():
        try:
            return CodeStep(form=form, response=accept(form.cleaned_data["otp_token"]))
        except MfaLockedError:
            return CodeStep(form=form, response=locked_out(request))
        except MfaError as error:
            form.add_error("otp_token", str(error))
    return CodeStep(form=form, status=400)


@public_view(host=ANY_HOST)
@sensitive_post_parameters("otp_token")
@never_cache
@require_http_methods(["GET", "POST"])
def mfa(request: HttpRequest) -> HttpResponse:
    """The second step: a code from the authenticator app, or a recovery code."""
    if not request.user.is_authenticated:
        return redirect("staff:login")
    if user_is_verified(request.user):
        return HttpResponseRedirect(_next_url(request))
    if not mfa_enrolled(request.user):
        return _with_next("staff:mfa-enrol", _requested_next(request))

    def accept(code: str) -> HttpResponse:
        mfa_verify(request=request, user=request.user, code=code)  # type: ignore[arg-type]
        return HttpResponseRedirect(_next_url(request))

    step = _code_step(request, accept)
    if step.response is not None:
        return step.response
    context = {"form": step.form, "next": _requested_next(request)}
    return render(request, "security/mfa.html", context, status=step.status)


@public_view(host=ANY_HOST)
@sensitive_post_parameters("otp_token")
@never_cache
@require_http_methods(["GET", "POST"])
def mfa_enrol(request: HttpRequest) -> HttpResponse:
    """Set up an authenticator app: QR code and secret, then a code to confirm; recovery codes once."""
    if not request.user.is_authenticated:
        return redirect("staff:login")
    if mfa_enrolled(request.user):
        return _with_next("staff:mfa", _requested_next(request))
    enrolment = mfa_enrolment_begin(user=request.user)

    def accept(code: str) -> HttpResponse:
        codes = mfa_enrolment_confirm(request=request, user=request.user, code=code)  # type: ignore[arg-type]
        # Shown once, in this response; never stored in clear or in the session.
        return render(request, "security/recovery_codes.html", {"codes": codes, "next": _next_url(request)})

    step = _code_step(request, accept)
    if step.response is not None:
        return step.response
    context = {"form": step.form, "enrolment": enrolment, "next": _requested_next(request)}
    return render(request, "security/mfa_enrol.html", context, status=step.status)


@public_view(host=ANY_HOST)
@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    """Sign out: the session is deleted server-side, so its id is worthless afterwards."""
    login_url = reverse("staff:login")
    auth_logout(request)
    messages.info(request, "You have signed out.")
    return redirect(login_url)


# --- One's own account --------------------------------------------------------------------


@require_permission("account.manage")
@require_GET
def account(request: HttpRequest) -> HttpResponse:
    context = {"recovery_codes_left": recovery_codes_remaining(request.user)}  # type: ignore[arg-type]
    return render(request, "security/account.html", context)


class StaffPasswordChangeForm(PasswordChangeForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("old_password", "new_password1", "new_password2"):
            self.fields[name].max_length = 256  # type: ignore[attr-defined]


@require_permission("account.manage")
@sensitive_post_parameters("old_password", "new_password1", "new_password2")
@never_cache
@require_http_methods(["GET", "POST"])
def password_change(request: HttpRequest) -> HttpResponse:
    """Change one's password; every other session of the account ends server-side."""
    form = StaffPasswordChangeForm(request.user, request.POST if request.method == "POST" else None)
    if request.method == "POST":
        if form.is_valid():
            user = form.save()
            update_session_auth_hash(request, user)
            ended = password_change_complete(request=request, user=user)
            plural = "session was" if ended == 1 else "sessions were"
            messages.success(request, f"Your password was changed. {ended} other {plural} signed out.")
            return redirect("staff:account")
        return render(request, "security/password_change.html", {"form": form}, status=400)
    return render(request, "security/password_change.html", {"form": form})


@require_permission("account.manage")
@require_POST
def recovery_codes_new(request: HttpRequest) -> HttpResponse:
    codes = recovery_codes_regenerate(request=request, user=request.user)  # type: ignore[arg-type]
    return render(request, "security/recovery_codes.html", {"codes": codes, "next": reverse("staff:account")})
