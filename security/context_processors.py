"""What the staff navigation may offer the signed-in member."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest


def staff_permissions(request: HttpRequest) -> dict[str, Any]:
    # request.access is set by require_permission on staff views; elsewhere
    # there is none and the navigation offers no links.
    access = getattr(request, "access", None)
    return {
        "staff_permissions": access.permissions if access is not None else frozenset(),
        "staff_access": access,
    }
