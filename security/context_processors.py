"""What the staff navigation may offer the signed-in member."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from security.permissions import ROLE_PERMISSIONS


def staff_permissions(request: HttpRequest) -> dict[str, Any]:
    # Set by require_permission on staff views; absent elsewhere (no links).
    membership = getattr(request, "membership", None)
    permissions = ROLE_PERMISSIONS.get(membership.role, frozenset()) if membership is not None else frozenset()
    return {"staff_permissions": permissions}
