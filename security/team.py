"""A clinic's staff: members, invitations, roles, deactivation, MFA reset, unlock.

Services for clinic admins (permission staff.manage). Every change is audited.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from portal.models import Tenant
from security.login_lockout import account_lockouts
from security.models import Membership, Role, StaffInvitation


def team_summary(*, tenant: Tenant) -> dict[str, Any]:
    """Counts for the dashboard: active staff, pending invitations, locked accounts."""
    staff = Membership.objects.filter(tenant=tenant, is_active=True).exclude(role=Role.PATIENT)
    emails = list(staff.values_list("user__email", flat=True))
    return {
        "active_staff": len(emails),
        "pending_invitations": StaffInvitation.objects.filter(
            tenant=tenant, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now()
        ).count(),
        "locked_accounts": len(account_lockouts(emails=emails)),
    }
