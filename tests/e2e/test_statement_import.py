"""Statement import in a real browser: a billing manager uploads the demo's example file
(with bad rows), sees the results and the rejected rows, and downloads the report.

The import runs as the Celery task (eager here) when the upload commits. Screenshots
at 1280 and 390 px go to test-artifacts/.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from audit.models import AuditEvent
from billing.import_models import ImportJob, ImportStatus
from portal.tenancy.context import tenant_scope
from security.models import Role
from tests.conftest import Clinic, live_url
from tests.e2e.test_refunds import signed_in

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

EXAMPLE = Path(__file__).resolve().parents[2] / "billing" / "demo_data" / "statements-example.csv"


@pytest.fixture
def page(browser_page: Page) -> Iterator[Page]:
    browser_page.set_default_timeout(15_000)
    yield browser_page


def test_a_billing_manager_imports_a_file_with_bad_rows_and_downloads_the_report(
    page: Page, live_server, clinic_a: Clinic, screenshot, tmp_path: Path
) -> None:
    base = live_url(live_server, clinic_a.tenant, "").rstrip("/")
    signed_in(page.context, clinic_a, Role.BILLING_MANAGER, base)
    page.goto(f"{base}/staff/")
    page.get_by_role("link", name="Imports").click()
    page.get_by_role("heading", name="Import statements").wait_for()

    # A file that is not UTF-8 is refused with its problem on the field.
    bad = tmp_path / "statements-latin1.csv"
    bad.write_bytes(EXAMPLE.read_text().replace("Nora", "Noré").encode("latin-1"))
    page.set_input_files("#id_file", str(bad))
    page.get_by_role("button", name="Import").click()
    assert "not UTF-8" in page.locator("#id_file_error").inner_text()
    screenshot(page, "1-refused-1280")
    with tenant_scope(clinic_a.tenant):
        assert not ImportJob.objects.exists()

    # The example file: five good rows, five bad ones.
    page.set_input_files("#id_file", str(EXAMPLE))
    page.get_by_role("button", name="Import").click()
    page.get_by_role("heading", name="Rejected rows").wait_for()
    assert page.locator("#count-accepted").inner_text() == "6"
    assert page.locator("#count-rejected").inner_text() == "5"
    assert page.locator("#import-progress").get_attribute("value") == "100"
    rejected = page.locator("#rejected-rows").inner_text()
    assert "statement_date is not a real date" in rejected and "first_name is missing" in rejected
    assert "address_line1" in page.locator("#ignored-columns").inner_text()
    screenshot(page, "2-results-1280")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download the rejected rows (CSV)").click()
    download = download_info.value
    assert download.suggested_filename.startswith("rejected-rows-")
    rows = list(csv.reader(io.StringIO(Path(download.path()).read_text())))
    assert [row[0] for row in rows[1:]] == ["7", "8", "9", "10", "12"]
    assert AuditEvent.objects.filter(action="statements.import_report_downloaded").count() == 1

    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "3-results-390")
    page.goto(f"{base}/staff/imports/")
    screenshot(page, "4-imports-390")
    page.set_viewport_size({"width": 1280, "height": 900})
    screenshot(page, "4-imports-1280")
    with tenant_scope(clinic_a.tenant):
        assert ImportJob.objects.get().status == ImportStatus.DONE
