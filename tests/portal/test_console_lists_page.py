"""Staff lists that grow are paged with the shared pager (templates/includes/pager.html).

Before, the payments list showed the newest 50 and nothing older; the team
page listed everyone on one page.
"""

from __future__ import annotations

import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from billing.models import Checkout, Payment, PaymentStatus
from billing.views.staff import PAYMENTS_PAGE_SIZE
from portal.tenancy.context import tenant_scope
from security.models import Role
from security.team import TEAM_PAGE_SIZE
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def _payments(clinic, count: int) -> None:
    with tenant_scope(clinic.tenant):
        checkout = Checkout.objects.create(
            tenant=clinic.tenant, statement=clinic.statement, expires_at=timezone.now() + datetime.timedelta(hours=1)
        )
        for n in range(count):
            Payment.objects.create(
                tenant=clinic.tenant,
                checkout=checkout,
                statement=clinic.statement,
                patient=clinic.patient,
                attempt_number=n + 1,
                setup_intent_id=f"seti_page_{n}",
                amount_minor=100 + n,
                currency=clinic.tenant.currency,
                status=PaymentStatus.SUCCEEDED,
                receipt_number=f"R-{n:04d}",
            )


def test_the_payments_list_pages_and_older_payments_are_reachable(clinic_a):
    _payments(clinic_a, PAYMENTS_PAGE_SIZE + 3)
    client = clinic_a.client_as(Role.BILLING_MANAGER)

    first = client.get(reverse("staff:payments")).content.decode()
    assert first.count('<tr class="status-') == PAYMENTS_PAGE_SIZE
    assert 'href="?page=2" rel="next"' in first
    assert f"Page 1 of 2 ({PAYMENTS_PAGE_SIZE + 3} payments)" in first

    second = client.get(reverse("staff:payments"), {"page": "2"}).content.decode()
    assert second.count('<tr class="status-') == 3
    assert "R-0000" in second and "R-0000" not in first, "the oldest payment is on the last page"
    assert 'href="?page=1" rel="prev"' in second
    event = AuditEvent.objects.filter(action="ledger.viewed", target_type="payment_list").latest("sequence")
    assert event.details["page"] == 2


def test_a_page_past_the_end_shows_the_last_page(clinic_a):
    _payments(clinic_a, 2)
    page = clinic_a.client_as(Role.BILLING_MANAGER).get(reverse("staff:payments"), {"page": "99"})
    assert page.status_code == 200 and page.content.decode().count('<tr class="status-') == 2
    assert 'class="pager"' not in page.content.decode(), "one page: no pager"


def test_the_team_list_pages(clinic_a):
    staff_now = 4  # build_clinic: one member per staff role
    for n in range(TEAM_PAGE_SIZE - staff_now + 2):
        user = UserFactory.create(email=f"member{n:03d}@alpha.example")
        MembershipFactory.create(tenant=clinic_a.tenant, user=user, role=Role.FRONT_DESK)
    client = clinic_a.client_as(Role.CLINIC_ADMIN)

    first = client.get(reverse("team:list")).content.decode()
    members_table = first.split('id="members"')[1].split("</table>")[0]
    assert members_table.count("Manage</a>") == TEAM_PAGE_SIZE
    assert f"Page 1 of 2 ({TEAM_PAGE_SIZE + 2} staff)" in first

    second = client.get(reverse("team:list"), {"page": "2"}).content.decode()
    assert second.split('id="members"')[1].split("</table>")[0].count("Manage</a>") == 2
    assert "Invite someone" in second, "the invite form stays on every page"
