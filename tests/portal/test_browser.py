"""The browser harness: Chromium, through Playwright, against the live server."""

from __future__ import annotations

import pytest

from tests.conftest import live_url

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_clinic_page_renders_in_chromium(browser_page, live_server, clinic_a, localstripe, screenshot):
    errors: list[str] = []
    browser_page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    browser_page.on("pageerror", lambda error: errors.append(str(error)))

    response = browser_page.goto(live_url(live_server, clinic_a.tenant, "/"))

    assert response is not None and response.status == 200
    assert clinic_a.tenant.name in browser_page.title() + browser_page.content()
    assert "content-security-policy" in response.headers
    path = screenshot(browser_page, "landing")
    assert path.is_file() and path.stat().st_size > 0
    assert errors == [], errors


def test_an_unknown_clinic_host_gets_the_friendly_page(browser_page, live_server, db):
    response = browser_page.goto(live_url(live_server, None, "/").replace("://localhost", "://nobody.localhost"))
    assert response is not None and response.status == 404
    heading = browser_page.locator("h1").first.inner_text()
    assert heading.strip(), "a friendly page with a heading, not a bare error"
    assert "Traceback" not in browser_page.content()
