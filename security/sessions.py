"""Staff session limits, and the index that lets users see and end their sessions.

Staff sessions (an active non-patient membership at the request's clinic, or
a platform operator) end after 15 minutes without a request and 12 hours
after sign-in, however active (PCI DSS 8.2.8, SECURITY.md). Both times live
in the server-side session and are compared with django.utils.timezone.now.
Expiry logs the user out server-side (the session row is deleted) and
redirects to the sign-in page with a message saying why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.contrib.sessions.models import Session
from django.db import transaction
from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase
from django.urls import reverse
from django.utils import timezone

from audit.recorder import audit_record
from portal.net import client_ip
from security.models import User, UserSession
from security.permissions import staff_access_for
from security.textinput import clean_text

STAFF_IDLE_TIMEOUT = timedelta(minutes=15)
STAFF_ABSOLUTE_TIMEOUT = timedelta(hours=12)

# Session keys (ISO 8601 times, JSON-serialisable).
LOGIN_AT_KEY = "settle_login_at"
LAST_ACTIVITY_KEY = "settle_last_activity"

IDLE_MESSAGE = "You were signed out after 15 minutes without activity. Please sign in again."
ABSOLUTE_MESSAGE = "You were signed out because staff sessions last at most 12 hours. Please sign in again."


def is_staff_request(request: HttpRequest) -> bool:
    """True for platform operators and for users with an active staff role at this request's clinic."""
    user = request.user
    if not user.is_authenticated:
        return False
    if getattr(user, "is_platform_operator", False):
        return True
    # The same answer the view's permission check uses (computed once per request).
    return staff_access_for(request) is not None


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def session_mark_login(request: HttpRequest) -> None:
    """Start the clocks of a freshly signed-in session."""
    now = timezone.now().isoformat()
    request.session[LOGIN_AT_KEY] = now
    request.session[LAST_ACTIVITY_KEY] = now


def _expiry_reason(request: HttpRequest) -> str | None:
    now = timezone.now()
    login_at = _parse(request.session.get(LOGIN_AT_KEY))
    last = _parse(request.session.get(LAST_ACTIVITY_KEY))
    if login_at is None:
        # A session from before these limits: its clocks start now.
        request.session[LOGIN_AT_KEY] = now.isoformat()
        login_at = now
    if last is not None and now - last > STAFF_IDLE_TIMEOUT:
        return IDLE_MESSAGE
    if now - login_at >= STAFF_ABSOLUTE_TIMEOUT:
        return ABSOLUTE_MESSAGE
    request.session[LAST_ACTIVITY_KEY] = now.isoformat()
    return None


def _login_url(request: HttpRequest) -> str:
    if getattr(request, "tenant", None) is not None:
        return reverse("staff:login")
    return reverse("admin:login")


class StaffSessionMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if is_staff_request(request):
            reason = _expiry_reason(request)
            if reason is not None:
                # Deletes the session row: the old session id is worthless.
                logout(request)
                messages.warning(request, reason)
                return redirect_to_login(request.get_full_path(), _login_url(request))
        return self.get_response(request)


# --- The session index ---------------------------------------------------------------


def user_session_record(*, request: HttpRequest, user: User) -> None:
    """Index the request's (just signed-in) session under `user`. Called on login."""
    session_key = request.session.session_key
    if not session_key:
        request.session.save()
        session_key = request.session.session_key
    ip: str | None = client_ip(request)
    if ip == "0.0.0.0":  # noqa: S104 - client_ip's placeholder for "unknown" # nosec B104
        ip = None
    UserSession.objects.update_or_create(
        session_key=session_key,
        defaults={
            "user": user,
            "created_at": timezone.now(),
            "ip_address": ip,
            "user_agent": clean_text((getattr(request, "headers", {}).get("User-Agent") or "")[:200]),
        },
    )


@dataclass(frozen=True)
class ActiveSession:
    index: UserSession
    last_activity: datetime | None
    is_current: bool


def user_sessions_active(*, user: User, current_key: str | None) -> list[ActiveSession]:
    """The user's live sessions, newest first. Stale index rows are skipped."""
    rows = list(UserSession.objects.filter(user=user).order_by("-created_at"))
    live = {
        s.session_key: s
        for s in Session.objects.filter(session_key__in=[r.session_key for r in rows], expire_date__gt=timezone.now())
    }
    result = []
    for row in rows:
        session = live.get(row.session_key)
        if session is None:
            continue
        data = session.get_decoded()
        if str(data.get("_auth_user_id")) != str(user.pk):
            continue
        result.append(
            ActiveSession(
                index=row,
                last_activity=_parse(data.get(LAST_ACTIVITY_KEY)),
                is_current=row.session_key == current_key,
            )
        )
    return result


def access_user_session_by_uuid(*, user: User, uuid: UUID) -> UserSession:
    """The user's own session index row; 404 for missing and for anyone else's alike."""
    row = UserSession.objects.filter(public_id=uuid, user=user).first()
    if row is None:
        raise Http404
    return row


def _end(row: UserSession) -> int:
    """Delete the session and its index row; 1 if a session was ended."""
    deleted, _ = Session.objects.filter(session_key=row.session_key).delete()
    row.delete()
    return 1 if deleted else 0


def user_session_end(*, request: HttpRequest, user: User, user_session: UserSession) -> None:
    """End one of the user's other sessions server-side; audited (auth.session_ended).

    Needs permission account.sessions (checked by the view). The current
    session is ended by signing out instead.
    """
    with transaction.atomic(durable=True):
        public_id = str(user_session.public_id)
        _end(user_session)
        audit_record(
            action="auth.session_ended",
            tenant=getattr(request, "tenant", None),
            actor=user,
            target_type="session",
            target_id=public_id,
            request=request,
        )


def user_sessions_end_all(*, user: User, keep_session_key: str | None = None) -> int:
    """End every indexed session of `user` server-side, except `keep_session_key`.

    No audit of its own: callers (ending other sessions, password change, MFA
    reset, deactivation) record the act that caused it. Returns how many
    sessions were ended.
    """
    rows = list(UserSession.objects.filter(user=user).exclude(session_key=keep_session_key or ""))
    return sum(_end(row) for row in rows)


def user_sessions_end_others(*, request: HttpRequest, user: User) -> int:
    """End every session of the user except the current one; audited (auth.sessions_ended_others)."""
    with transaction.atomic(durable=True):
        ended = user_sessions_end_all(user=user, keep_session_key=request.session.session_key)
        audit_record(
            action="auth.sessions_ended_others",
            tenant=getattr(request, "tenant", None),
            actor=user,
            target_type="session",
            request=request,
            details={"count": ended},
        )
    return ended
