"""The staff console's sections: what each permission opens, for pages that list them.

The refusal page (portal.views.errors.forbidden) lists the sections the signed-in
role may open, with links, instead of a bare "403 Forbidden". A new staff
section appends its entry here (and its link to templates/base_staff.html).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.urls import NoReverseMatch, reverse


@dataclass(frozen=True)
class StaffSection:
    permission: str
    title: str
    url_name: str
    description: str


STAFF_SECTIONS: list[StaffSection] = [
    StaffSection("dashboard.view", "Dashboard", "staff:dashboard", "Today's payments and the team at a glance."),
    StaffSection("patients.view", "Patients", "staff:patients", "Find a patient and open their ledger."),
    StaffSection("payments.view", "Payments", "staff:payments", "Recent payments, their status and receipts."),
    StaffSection(
        "refunds.approve", "Approvals", "staff:refunds", "Approve or reject refunds and adjustments above a limit."
    ),
    StaffSection("disputes.manage", "Disputes", "staff:disputes", "Chargebacks and their evidence due dates."),
    StaffSection(
        "audit.view", "Audit trail", "audit:search", "Search events, see who accessed a patient, verify the chain."
    ),
    StaffSection("audit.export", "Audit exports", "audit:exports", "Export the audit trail and download exports."),
    StaffSection(
        "staff.manage", "Team", "team:list", "Invite staff, change roles, reset authenticators, unlock accounts."
    ),
    StaffSection("keys.rotate", "Encryption keys", "keys:keys", "See the clinic's data keys and rotate them."),
    StaffSection(
        "settings.manage", "Settings", "clinic_settings:overview", "Profile, branding, processor keys and policies."
    ),
    StaffSection(
        "platform.break_glass", "Emergency access", "breakglass:start", "Start or end time-boxed emergency access."
    ),
    StaffSection("account.manage", "Your account", "staff:account", "Your password and recovery codes."),
    StaffSection(
        "account.sessions", "Your sessions", "sessions:list", "Where you are signed in, and signing out there."
    ),
]


@dataclass(frozen=True)
class SectionLink:
    title: str
    url: str
    description: str


def sections_for(permissions: Iterable[str]) -> list[SectionLink]:
    """The sections `permissions` open, in console order, with their URLs."""
    allowed = set(permissions)
    links = []
    for section in STAFF_SECTIONS:
        if section.permission not in allowed:
            continue
        try:
            url = reverse(section.url_name)
        except NoReverseMatch:  # a section whose URLs this deployment does not route
            continue
        links.append(SectionLink(title=section.title, url=url, description=section.description))
    return links
