"""Break-glass: a platform operator's emergency access to one clinic.

Reason required, time-boxed, announced to the clinic's admins, audited.
"""

from __future__ import annotations

from django.utils import timezone

from portal.models import Tenant
from security.models import BreakGlassGrant, User


def break_glass_live_grant(*, tenant: Tenant, operator: User) -> BreakGlassGrant | None:
    """The operator's live grant at `tenant`, if any (not ended, not expired)."""
    return (
        BreakGlassGrant.objects.filter(
            tenant=tenant, operator=operator, ended_at__isnull=True, expires_at__gt=timezone.now()
        )
        .order_by("-started_at")
        .first()
    )
