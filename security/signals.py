"""Audit staff sign-ins, failures and sign-outs."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import transaction
from django.dispatch import receiver
from django.http import HttpRequest

from audit.models import Outcome
from audit.recorder import audit_record
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
    with transaction.atomic():
        audit_record(action="auth.login_failed", tenant=_tenant(request), outcome=Outcome.FAILURE, request=request)


@receiver(user_logged_in)
def _index_session(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    # Start the staff session clocks and index the session so the user can
    # list and end it (security.sessions).
    if request is None or not hasattr(request, "session"):
        return
    session_mark_login(request)
    user_session_record(request=request, user=user)
