"""Staff patient search in a real browser: a first name, a date of birth alone, and nothing found.

Chromium (Playwright) against the live server on Alpha Clinic's host, signed
in as the front desk (the session of a verified sign-in, tests/conftest.py
login_verified, handed to the browser as its cookie). Screenshots at 1280 and
390 px wide go to test-artifacts/e2e-patient-search-*.png.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from django.conf import settings

from tests.conftest import Clinic, artifact_path, live_url
from tests.factories import PatientFactory

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

STEP_TIMEOUT = 15_000
BORN = datetime.date(1990, 5, 17)


@pytest.fixture
def page(browser_page: Page, clinic_a: Clinic, live_server: Any) -> Iterator[Page]:
    browser_page.set_default_timeout(STEP_TIMEOUT)
    browser_page.set_default_navigation_timeout(STEP_TIMEOUT)
    client = clinic_a.client_as("front_desk")
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    browser_page.context.add_cookies(
        [{"name": cookie.key, "value": cookie.value, "url": live_url(live_server, clinic_a.tenant, "/")}]
    )
    yield browser_page


def shoot(page: Page, name: str) -> None:
    for width, height in ((1280, 900), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        path = artifact_path(f"e2e-patient-search-{name}-{width}.png")
        page.screenshot(path=str(path), full_page=True)
        assert path.is_file() and path.stat().st_size > 0
    page.set_viewport_size({"width": 1280, "height": 900})


def search(page: Page, *, text: str = "", date_of_birth: str = "") -> str:
    page.locator("#id_q").fill(text)
    page.locator("#id_date_of_birth").fill(date_of_birth)
    page.get_by_role("button", name="Find").click()
    page.wait_for_load_state("load")
    return page.locator("#search-summary").inner_text()


def test_front_desk_finds_patients_by_what_they_type(page: Page, live_server: Any, clinic_a: Clinic) -> None:
    PatientFactory.create(tenant=clinic_a.tenant, first_name="Ada", last_name="Lovelace", date_of_birth=BORN)
    for n in range(51):
        PatientFactory.create(tenant=clinic_a.tenant, first_name=f"D{n:02d}", last_name="Sameday", date_of_birth=BORN)
    page.goto(live_url(live_server, clinic_a.tenant, "/staff/patients/"))

    assert "1 patient found." in search(page, text="ada")
    assert page.locator("#patients tbody tr").count() == 1
    assert "Lovelace, Ada" in page.locator("#patients").inner_text()
    shoot(page, "first-name")

    summary = search(page, date_of_birth="05/17/1990")
    assert "More than 50 patients have this date of birth; the first 50 are listed." in summary
    assert page.locator("#patients tbody tr").count() == 50
    shoot(page, "date-of-birth-alone")

    summary = search(page, text="Nobody")
    assert "No patients found." in summary
    assert "account number, statement number, last name or first name" in summary
    assert page.locator("#patients").count() == 0
    shoot(page, "nothing-found")
