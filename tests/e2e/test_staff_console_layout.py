"""The staff console's layout in Chromium at a desk (1280 px) and on a phone (390 px).

A clinic admin given every permission (so every section is in the
navigation) opens the audit search, payments, patients and team pages over
a clinic with enough rows to page. For each page the DOM must show:

- no clipped table: at 1280 px each table fits its container (scrollWidth <=
  the container's clientWidth); at 390 px a table may be wider than the
  screen but then sits in a horizontal scroll container that itself fits;
  the page never scrolls sideways;
- every date cell (columns headed Date, Time, Started, Expires, Locked
  until, ...) on one line: its text is no taller than one line-height;
- the staff navigation reachable: at 390 px the menu button opens it and
  every link and the sign-out button is visible inside the viewport.

Screenshots of every page at both widths go to test-artifacts/.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from billing.models import Checkout, Payment, PaymentStatus
from portal.tenancy.context import tenant_scope
from security.models import Role
from security.permissions import PERMISSIONS, ROLE_PERMISSIONS
from tests.conftest import Clinic, live_url
from tests.factories import MembershipFactory, PatientFactory, StatementFactory, UserFactory

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, ViewportSize

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DESK: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
PAGES = {
    "audit": "/staff/audit/",
    "payments": "/staff/payments/",
    "patients": "/staff/patients/",
    "team": "/staff/team/",
    "keys": "/staff/keys/",
}
# Pages without a table: checked for sideways scroll and navigation only.
PLAIN_PAGES = {
    "dashboard": "/staff/",
    "account": "/staff/account/",
    "refunds": "/staff/refunds/",
    "disputes": "/staff/disputes/",
    "settings": "/staff/settings/",
}
DATE_HEADER = re.compile(
    r"^(date|time|started|finished|expires|created|rewrapped|retired|locked until|when)\b", re.IGNORECASE
)

# Measured in the page: tables, their scroll containers, date cells, sideways scroll.
MEASURE = """
(dateHeader) => {
  const dateRe = new RegExp(dateHeader, "i");
  const scroller = (el) => {
    for (let node = el; node && node !== document.body; node = node.parentElement) {
      const overflow = getComputedStyle(node).overflowX;
      if (overflow === "auto" || overflow === "scroll") return node;
    }
    return null;
  };
  const tables = [...document.querySelectorAll("main table")].map((table, index) => {
    const container = table.parentElement;
    const box = scroller(table);
    const headers = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
    const dates = [];
    headers.forEach((header, column) => {
      if (!dateRe.test(header)) return;
      for (const row of table.querySelectorAll("tbody tr")) {
        const cell = row.children[column];
        const text = cell ? cell.textContent.trim() : "";
        if (!text || text === "—" || text === "–") continue;
        const range = document.createRange();
        range.selectNodeContents(cell);
        const height = range.getBoundingClientRect().height;
        const lineHeight = parseFloat(getComputedStyle(cell).lineHeight);
        dates.push({header, text, height, lineHeight});
      }
    });
    return {
      index,
      id: table.id || headers.join("|").slice(0, 60),
      scrollWidth: table.scrollWidth,
      containerWidth: container.clientWidth,
      scroller: box ? {right: box.getBoundingClientRect().right, left: box.getBoundingClientRect().left} : null,
      dates,
    };
  });
  return {
    tables,
    pageScrollWidth: document.documentElement.scrollWidth,
    viewportWidth: window.innerWidth,
  };
}
"""


@pytest.fixture
def everything_admin(clinic_a: Clinic, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Alpha's clinic admin, given every permission so the navigation shows every section."""
    monkeypatch.setitem(ROLE_PERMISSIONS, Role.CLINIC_ADMIN, frozenset(PERMISSIONS))
    return clinic_a.user(Role.CLINIC_ADMIN)


def _busy_clinic(clinic: Clinic) -> None:
    """Rows enough to page, with the long values that stretch columns."""
    tenant = clinic.tenant
    patients = [
        PatientFactory.create(tenant=tenant, first_name="Maximiliana", last_name=f"Featherstonehaugh-Wright {n}")
        for n in range(3)
    ]
    statements = [StatementFactory.create(tenant=tenant, patient=p) for p in patients]
    with tenant_scope(tenant):
        checkout = Checkout.objects.create(
            tenant=tenant, statement=statements[0], expires_at=timezone.now() + datetime.timedelta(hours=1)
        )
        for n in range(60):
            status = [PaymentStatus.SUCCEEDED, PaymentStatus.REQUIRES_PAYMENT_METHOD][n % 2]
            Payment.objects.create(
                tenant=tenant,
                checkout=checkout,
                statement=statements[0],
                patient=patients[0],
                attempt_number=n + 1,
                setup_intent_id=f"seti_layout_{n}",
                amount_minor=123_456 + n,
                currency=tenant.currency,
                status=status,
                card_brand="mastercard",
                card_last4="4444",
                flagged=n % 5 == 0,
                flag_reason="postal_check_failed" if n % 5 == 0 else "",
                failure_code="card_declined" if status != PaymentStatus.SUCCEEDED else "",
                receipt_number=f"RCPT-2026-{n:06d}" if status == PaymentStatus.SUCCEEDED else "",
            )
    for n in range(4):
        user = UserFactory.create(
            email=f"a.very.long.staff.address.{n}@alpha-clinic-billing.example", full_name=f"Staff Member {n}"
        )
        MembershipFactory.create(tenant=tenant, user=user, role=Role.BILLING_MANAGER)
    # Audit events with a patient target and a long (IPv6) source address.
    reader = clinic.client_as(Role.CLINIC_ADMIN)
    for patient in patients:
        reader.get(
            reverse("staff:patient-ledger", kwargs={"patient_id": patient.public_id}),
            REMOTE_ADDR="2001:db8:85a3:0:0:8a2e:370:7334",
        )
    reader.post(reverse("team:invite"), {"email": "pending.invitee@alpha-clinic.example", "role": Role.FRONT_DESK})


@pytest.fixture
def signed_in(
    chromium_browser: Browser, live_server: Any, clinic_a: Clinic, everything_admin: Any, request: Any
) -> Iterator[Any]:
    """open(viewport) -> a page whose browser carries the admin's verified session."""
    _busy_clinic(clinic_a)
    session = clinic_a.client(everything_admin).cookies[settings.SESSION_COOKIE_NAME].value
    base = live_url(live_server, clinic_a.tenant, "/")
    contexts = []

    def open_page(viewport: ViewportSize) -> Page:
        context = chromium_browser.new_context(viewport=viewport)
        context.set_default_timeout(15_000)
        context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": base}])
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def _check_page(page: Page, name: str, *, phone: bool) -> list[str]:
    problems: list[str] = []
    found = page.evaluate(MEASURE, DATE_HEADER.pattern)
    if found["pageScrollWidth"] > found["viewportWidth"]:
        problems.append(f"{name}: the page scrolls sideways ({found['pageScrollWidth']} > {found['viewportWidth']})")
    if name in PAGES:
        assert found["tables"], f"{name}: no table to check"
    for table in found["tables"]:
        fits = table["scrollWidth"] <= table["containerWidth"]
        if phone:
            scroller = table["scroller"]
            in_scroller = scroller is not None and scroller["left"] >= 0 and scroller["right"] <= found["viewportWidth"]
            if not fits and not in_scroller:
                problems.append(f"{name}: table {table['id']} is clipped and not in a scroll container: {table}")
        elif not fits:
            problems.append(
                f"{name}: table {table['id']} is clipped ({table['scrollWidth']} > {table['containerWidth']})"
            )
        for cell in table["dates"]:
            if cell["height"] > cell["lineHeight"] + 0.5:
                problems.append(f"{name}: date {cell['text']!r} ({cell['header']}) wraps: {cell}")
    return problems


def _check_nav(page: Page, name: str, *, phone: bool) -> list[str]:
    problems: list[str] = []
    nav = page.locator("nav.staff-nav")
    toggle = page.locator(".menu-toggle")
    if phone:
        if toggle.count() != 1 or not toggle.is_visible():
            return [f"{name}: no menu button on a phone"]
        assert toggle.get_attribute("aria-expanded") == "false"
        toggle.click()
        assert toggle.get_attribute("aria-expanded") == "true"
    viewport = page.viewport_size
    assert viewport is not None
    items = nav.locator("a, button")
    labels = [items.nth(i).inner_text().strip() for i in range(items.count())]
    for expected in ("Dashboard", "Patients", "Payments", "Audit", "Team", "Keys", "Emergency access", "Sign out"):
        if expected not in labels:
            problems.append(f"{name}: navigation lacks {expected!r} ({labels})")
    for i in range(items.count()):
        item = items.nth(i)
        box = item.bounding_box()
        label = labels[i]
        if not item.is_visible() or box is None:
            problems.append(f"{name}: nav item {label!r} is not visible")
            continue
        inside = (
            box["x"] >= 0
            and box["y"] >= 0
            and box["x"] + box["width"] <= viewport["width"] + 0.5
            and box["y"] + box["height"] <= viewport["height"] + 0.5
        )
        if not inside:
            problems.append(f"{name}: nav item {label!r} lies outside the viewport: {box}")
    return problems


@pytest.mark.parametrize("viewport", [DESK, PHONE], ids=["1280", "390"])
def test_staff_pages_fit_their_tables_dates_and_navigation(signed_in, live_server, clinic_a, viewport, screenshot):
    phone = viewport is PHONE
    page = signed_in(viewport)
    csp_errors: list[str] = []
    page.on(
        "console",
        lambda m: csp_errors.append(m.text) if m.type == "error" and "Content Security Policy" in m.text else None,
    )
    problems: list[str] = []
    for name, path in {**PAGES, **PLAIN_PAGES}.items():
        response = page.goto(live_url(live_server, clinic_a.tenant, path))
        assert response is not None and response.status == 200, f"{name}: {response and response.status}"
        screenshot(page, name)
        problems += _check_page(page, name, phone=phone)
        problems += _check_nav(page, name, phone=phone)
        if phone:
            screenshot(page, f"{name}-menu-open")
    assert problems == [], "\n".join(problems)
    assert csp_errors == [], csp_errors


@pytest.mark.parametrize("viewport", [DESK, PHONE], ids=["1280", "390"])
def test_a_refused_page_lists_what_the_role_can_open(chromium_browser, live_server, clinic_a, viewport, screenshot):
    session = clinic_a.client_as(Role.FRONT_DESK).cookies[settings.SESSION_COOKIE_NAME].value
    context = chromium_browser.new_context(viewport=viewport)
    try:
        context.add_cookies(
            [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": live_url(live_server, clinic_a.tenant)}]
        )
        page = context.new_page()
        response = page.goto(live_url(live_server, clinic_a.tenant, "/staff/audit/"))
        assert response is not None and response.status == 403
        screenshot(page, "refused")
        links = page.locator("ul.sections a")
        assert [links.nth(i).inner_text() for i in range(links.count())] == [
            "Dashboard",
            "Patients",
            "Payments",
            "Your account",
            "Your sessions",
        ]
        links.first.click()
        page.wait_for_url(re.compile(r"/staff/$"))
    finally:
        context.close()
