"""The refusal page: a staff member refused a page learns what their role may open instead.

require_permission raises PermissionDenied; handler403 (portal.views.errors)
renders the staff shell with the role named in a sentence and a link to each
section the role opens, not a bare "403 Forbidden".
"""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from security.models import Role
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _section_links(html: str) -> set[str]:
    listed = re.search(r'<ul class="sections">(.*?)</ul>', html, re.S)
    assert listed, "no list of sections"
    return set(re.findall(r'<a href="([^"]+)">', listed.group(1)))


def test_front_desk_refused_the_audit_trail_sees_what_it_can_open(clinic_a):
    response = clinic_a.client_as(Role.FRONT_DESK).get(reverse("audit:search"))
    html = response.content.decode()

    assert response.status_code == 403
    assert "403 Forbidden" not in html
    assert "This page isn't open to you" in html
    assert f"signed in to {clinic_a.tenant.name} as a front desk staff member" in html
    assert _section_links(html) == {
        reverse("staff:dashboard"),
        reverse("staff:patients"),
        reverse("staff:payments"),
        reverse("staff:account"),
        reverse("sessions:list"),
    }
    assert 'aria-label="Staff"' in html and reverse("staff:logout") in html, "the staff navigation stays"
    assert "ask one of the clinic's admins to change your role" in html


def test_compliance_officer_refused_the_team_page_is_pointed_to_the_audit_trail(clinic_a):
    response = clinic_a.client_as(Role.COMPLIANCE_OFFICER).get(reverse("team:list"))
    html = response.content.decode()

    assert response.status_code == 403
    assert "as a compliance officer" in html
    links = _section_links(html)
    assert {reverse("audit:search"), reverse("audit:exports"), reverse("staff:payments")} <= links
    assert reverse("team:list") not in links and reverse("staff:patients") not in links


def test_a_platform_operator_without_a_grant_is_offered_emergency_access_only(clinic_a):
    operator = UserFactory.create(email="oncall@platform.example", is_platform_operator=True, is_staff=True)
    response = clinic_a.client(operator).get(reverse("staff:payments"))
    html = response.content.decode()

    assert response.status_code == 403
    assert "as a Settle platform operator" in html
    assert _section_links(html) == {reverse("breakglass:start")}


def test_someone_without_a_staff_role_gets_the_refusal_without_a_list(clinic_a, outsider):
    response = clinic_a.client(outsider).get(reverse("staff:payments"))
    html = response.content.decode()

    assert response.status_code == 403
    assert "has no staff role at " + clinic_a.tenant.name in html
    assert '<ul class="sections">' not in html
