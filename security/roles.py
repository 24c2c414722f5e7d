"""How a role is named inside a sentence: its noun phrase with its article.

Role labels ("Front desk", "Billing manager") are column values and field
choices; a sentence needs a noun phrase ("as a front desk staff member").
Every message that names a role in running text (invitation email and page,
team pages and notices, the dashboard greeting, break-glass alerts) goes
through role_phrase, so a new role is named in one place.
"""

from __future__ import annotations

from security.models import Role
from security.permissions import BREAK_GLASS_ROLE, PLATFORM_OPERATOR_ROLE

# Role value -> the noun without its article. Indefinite articles throughout:
# a clinic may have several billing managers or admins, so "the clinic's
# billing manager" would claim a uniqueness the data does not have.
ROLE_NOUNS: dict[str, str] = {
    Role.PATIENT: "patient",
    Role.FRONT_DESK: "front desk staff member",
    Role.BILLING_MANAGER: "billing manager",
    Role.CLINIC_ADMIN: "clinic admin",
    Role.COMPLIANCE_OFFICER: "compliance officer",
    PLATFORM_OPERATOR_ROLE: "Settle platform operator",
    BREAK_GLASS_ROLE: "Settle platform operator on emergency access",
}


def role_noun(role: str) -> str:
    """The role's noun without article ("front desk staff member"); unknown roles read as "staff member"."""
    return ROLE_NOUNS.get(str(role), "staff member")


def role_phrase(role: str) -> str:
    """The role's noun phrase with its indefinite article: "a front desk staff member", "an admin"."""
    noun = role_noun(role)
    article = "an" if noun[:1].lower() in "aeiou" else "a"
    return f"{article} {noun}"
