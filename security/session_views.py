"""A staff member's own sessions: list them, end one, end all others."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from security.permissions import require_permission
from security.sessions import (
    access_user_session_by_uuid,
    user_session_end,
    user_sessions_active,
    user_sessions_end_others,
)


@require_permission("account.sessions")
@require_GET
def sessions_list(request: HttpRequest) -> HttpResponse:
    sessions = user_sessions_active(user=request.user, current_key=request.session.session_key)  # type: ignore[arg-type]
    return render(request, "security/sessions.html", {"sessions": sessions})


@require_permission("account.sessions")
@require_POST
def session_end(request: HttpRequest, session_id: UUID) -> HttpResponse:
    row = access_user_session_by_uuid(user=request.user, uuid=session_id)  # type: ignore[arg-type]
    if row.session_key == request.session.session_key:
        messages.info(request, "To end this session, sign out.")
        return redirect("sessions:list")
    user_session_end(request=request, user=request.user, user_session=row)  # type: ignore[arg-type]
    messages.success(request, "The session was ended.")
    return redirect("sessions:list")


@require_permission("account.sessions")
@require_POST
def sessions_end_others(request: HttpRequest) -> HttpResponse:
    count = user_sessions_end_others(request=request, user=request.user)  # type: ignore[arg-type]
    messages.success(request, f"Ended {count} other session{'' if count == 1 else 's'}.")
    return redirect("sessions:list")
