"""Statement look-up lockout in a real browser: a lock at one clinic does not follow the address to another.

Chromium (Playwright) against the live server and localstripe, one browser
(one address, 127.0.0.1) on two clinics' hosts from tests/conftest.py:
Alpha Clinic at alpha.localhost and Beta Clinic at beta.localhost.

1. At Alpha, wrong dates of birth for Alpha's statement until look-ups are
   locked there. Alpha's per-address limit is set to its floor (10), so the
   tenth failure locks both the statement and the address at Alpha: before
   the counter was per clinic, that address lock held at every clinic.
2. At Alpha, a correct look-up of another statement is refused (the address
   is locked at Alpha).
3. At Beta, a correct look-up from the same browser opens Beta's payment page.

Screenshots at 1280 and 390 px wide go to test-artifacts/e2e-lookup-lockout-*.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from audit.models import AuditEvent
from security.lookup_policy import IP_FAILURE_LIMIT_MIN
from tests.conftest import Clinic, artifact_path, live_url
from tests.factories import PatientFactory, StatementFactory

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.localstripe, pytest.mark.django_db(transaction=True)]

DOB = "1984-02-29"  # tests/factories.py PatientFactory.date_of_birth
WRONG_DOB = "1990-01-01"
PAY_URL = re.compile(r"/pay/[0-9a-f-]{36}/$")
LOCKED = "statement look-ups are paused for 30 minutes"
STEP_TIMEOUT = 15_000


@pytest.fixture
def page(browser_page: Page) -> Iterator[Page]:
    browser_page.set_default_timeout(STEP_TIMEOUT)
    browser_page.set_default_navigation_timeout(STEP_TIMEOUT)
    yield browser_page


def lookup(page: Page, live_server: Any, clinic: Clinic, *, number: str, dob: str) -> None:
    response = page.goto(live_url(live_server, clinic.tenant, "/"))
    assert response is not None and response.status == 200
    page.fill("#id_statement_number", number)
    page.fill("#id_date_of_birth", dob)
    page.get_by_role("button", name="Find my bill").click()
    page.wait_for_load_state("load")


def shoot(page: Page, name: str) -> None:
    """Full-page screenshots at desktop (1280) and phone (390) widths."""
    for width, height in ((1280, 900), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        path = artifact_path(f"e2e-lookup-lockout-{name}-{width}.png")
        page.screenshot(path=str(path), full_page=True)
        assert path.is_file() and path.stat().st_size > 0
    page.set_viewport_size({"width": 1280, "height": 900})


def alert_text(page: Page) -> str:
    return page.get_by_role("alert").first.inner_text().strip()


def test_a_lockout_at_one_clinic_does_not_follow_the_address_to_another(
    page: Page, live_server: Any, clinic_a: Clinic, clinic_b: Clinic, localstripe: Any
) -> None:
    clinic_a.tenant.lookup_ip_failure_limit = IP_FAILURE_LIMIT_MIN
    clinic_a.tenant.save(update_fields=["lookup_ip_failure_limit"])
    other = StatementFactory.create(
        tenant=clinic_a.tenant, patient=PatientFactory.create(tenant=clinic_a.tenant), number="ALPHA-2002"
    )

    # 1. Wrong dates of birth at Alpha until look-ups are locked there.
    limit = clinic_a.tenant.lookup_statement_failure_limit
    for attempt in range(1, limit + 1):
        lookup(page, live_server, clinic_a, number=clinic_a.statement.number, dob=WRONG_DOB)
        message = alert_text(page)
        if attempt < limit:
            assert "could not find a statement" in message, (attempt, message)
    assert LOCKED in message
    shoot(page, "alpha-locked")

    # 2. The address is locked at Alpha: even a right look-up of another statement is refused.
    lookup(page, live_server, clinic_a, number=other.number, dob=DOB)
    assert LOCKED in alert_text(page)
    assert not PAY_URL.search(page.url)

    # 3. The same browser (same address) looks its bill up at Beta.
    lookup(page, live_server, clinic_b, number=clinic_b.statement.number, dob=DOB)
    page.wait_for_url(PAY_URL)
    assert page.url.startswith(live_url(live_server, clinic_b.tenant, "/pay/"))
    page.locator("#card-element input[placeholder=number]").wait_for(state="visible")
    shoot(page, "beta-opened")

    locked_at = AuditEvent.objects.filter(action="statement.lookup_locked")
    assert locked_at.filter(tenant=clinic_a.tenant).count() == 1 and not locked_at.filter(tenant=clinic_b.tenant)
    assert AuditEvent.objects.filter(tenant=clinic_b.tenant, action="statement.lookup", outcome="success").count() == 1
