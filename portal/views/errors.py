"""The refusal page (handler403): what the signed-in role may open instead."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from portal.views.sections import sections_for
from security.permissions import staff_access_for, user_is_verified


def forbidden(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """The refusal page: what the signed-in role may open instead, with links.

    require_permission raises PermissionDenied only after both factors, so
    the role's access is computed here again (request.access is not set on a
    refusal). A password-only session or someone without a staff role at the
    clinic gets the refusal without a list. The page names no patient.
    """
    user = getattr(request, "user", None)
    access = None
    if user is not None and user.is_authenticated and user_is_verified(user):
        access = staff_access_for(request)
    context: dict[str, Any] = {"refused_access": access, "sections": []}
    if access is not None:
        # The navigation and footer of base_staff.html read these (the view's
        # context outranks the staff_permissions context processor's).
        context.update(
            staff_access=access, staff_permissions=access.permissions, sections=sections_for(access.permissions)
        )
    return render(request, "portal/forbidden.html", context, status=403)
