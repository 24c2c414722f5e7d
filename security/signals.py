"""Audit staff sign-ins, failures and sign-outs."""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import transaction
from django.dispatch import receiver
from django.http import HttpRequest

from audit.models import Outcome
from audit.recorder import audit_record
from security.login_lockout import FACTOR_KEY, FACTOR_OTP
from security.sessions import session_mark_login, user_session_record


def _tenant(request: HttpRequest | None) -> Any:
    return getattr(request, "tenant", None) if request is not None else None


@receiver(user_logged_in)
def _logged_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    with transaction.atomic():
        audit_record(action="auth.login", tenant=_tenant(request), actor=user, request=request)


@receiver(user_logged_out)
def _logged_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    with transaction.atomic():
        audit_record(action="auth.logout", tenant=_tenant(request), actor=user, request=request)


@receiver(user_login_failed)
def _login_failed(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any) -> None:
    # The attempted email is not recorded: it may be a mistyped password.
    # A wrong one-time code comes through here too (security.login_lockout),
    # so that axes counts it; it is recorded as what it is.
    actor = None
    action = "auth.login_failed"
    if credentials.get(FACTOR_KEY) == FACTOR_OTP:
        action = "auth.otp_failed"
        # The password step was passed: the session's user is who failed.
        user = getattr(request, "user", None)
        actor = user if user is not None and user.is_authenticated else None
    with transaction.atomic():
        audit_record(action=action, tenant=_tenant(request), actor=actor, outcome=Outcome.FAILURE, request=request)


@receiver(user_locked_out)
def _locked_out(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    # Neither the username nor the address is put in details: the event's
    # source ip is the address, and the username may be a mistyped password.
    with transaction.atomic():
        audit_record(action="auth.locked_out", tenant=_tenant(request), outcome=Outcome.DENIED, request=request)


@receiver(user_logged_in)
def _index_session(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    # Start the staff session clocks and index the session so the user can
    # list and end it (security.sessions).
    if request is None or not hasattr(request, "session"):
        return
    session_mark_login(request)
    user_session_record(request=request, user=user)
