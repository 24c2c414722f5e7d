"""Services for one's own account: what follows a password change."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest

from audit.recorder import audit_record
from security.models import User
from security.sessions import user_sessions_end_all


def password_change_complete(*, request: HttpRequest, user: User) -> int:
    """After a password change: end every other session server-side and audit it.

    The current session survives (the caller refreshed its auth hash).
    Returns how many other sessions were ended.
    """
    with transaction.atomic():
        ended = user_sessions_end_all(user=user, keep_session_key=request.session.session_key)
        audit_record(
            action="auth.password_changed",
            tenant=getattr(request, "tenant", None),
            actor=user,
            target_type="user",
            target_id=str(user.public_id),
            request=request,
            details={"sessions_ended": ended},
        )
    return ended
