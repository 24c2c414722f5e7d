"""One time zone (UTC) and one meaning of "To" (the whole last day) in the console, the files and the command."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
import time_machine
from django.core.management import call_command
from django.urls import reverse

from audit.models import AuditEvent, AuditExport, ExportStatus
from audit.periods import Period, day_bounds
from audit.services.exports import export_read_all
from portal.tenancy.context import tenant_scope
from security.models import Role
from tests.audit.conftest import fill

pytestmark = pytest.mark.django_db

OFFICER = Role.COMPLIANCE_OFFICER.value

FIRST, LAST = "2026-10-05", "2026-10-20"
# Each side of each boundary of FIRST..LAST, to the microsecond (the chain's resolution).
BOUNDARIES = {
    "B-before": datetime(2026, 10, 4, 23, 59, 59, 999999, tzinfo=UTC),
    "B-first": datetime(2026, 10, 5, 0, 0, tzinfo=UTC),
    "B-last": datetime(2026, 10, 20, 23, 59, 59, 999999, tzinfo=UTC),
    "B-after": datetime(2026, 10, 21, 0, 0, tzinfo=UTC),
}
INSIDE = {"B-first", "B-last"}


@pytest.fixture(autouse=True)
def _export_dir(settings, tmp_path):
    settings.SETTLE_AUDIT_EXPORT_DIR = str(tmp_path / "exports")


def _record_boundaries(tenant) -> None:
    for target_id, moment in BOUNDARIES.items():
        with time_machine.travel(moment, tick=False):
            fill(tenant, 1, target_type="boundary", target_id=target_id)


def _exported_targets(clinic, export: AuditExport) -> tuple[dict, set[str]]:
    with tenant_scope(clinic.tenant):
        lines = [json.loads(line) for line in export_read_all(export=export, kind="jsonl").splitlines()]
    targets = {r["target_id"] for r in lines if r["type"] == "event" and r["target_type"] == "boundary"}
    return lines[0], targets


def test_a_range_is_its_first_and_last_day_both_included_in_utc():
    start, end = day_bounds(first=date(2026, 11, 2), last=date(2026, 12, 2))
    assert start == datetime(2026, 11, 2, tzinfo=UTC) and end == datetime(2026, 12, 3, tzinfo=UTC)
    period = Period(start, end)
    assert (period.first_day, period.last_day, period.whole_days) == (date(2026, 11, 2), date(2026, 12, 2), True)
    assert period.label() == "2026-11-02 to 2026-12-02 (UTC, both days included)"
    assert period.header() == {
        "from": "2026-11-02",
        "to": "2026-12-02",
        "time_zone": "UTC",
        "starts_at": "2026-11-02T00:00:00.000000Z",
        "ends_before": "2026-12-03T00:00:00.000000Z",
    }
    one_day = Period(*day_bounds(first=date(2026, 11, 2), last=date(2026, 11, 2)))
    assert one_day.label() == "2026-11-02 (UTC, the whole day)"
    made_in_code = Period(datetime(2026, 11, 2, 5, tzinfo=UTC), datetime(2026, 11, 3, 5, tzinfo=UTC))
    assert made_in_code.label() == "2026-11-02 05:00:00 to 2026-11-03 05:00:00 UTC (end excluded)"
    with pytest.raises(ValueError):
        day_bounds(first=date(2026, 11, 2), last=date(2026, 11, 1))


def test_search_shows_utc_times_and_includes_the_whole_last_day(clinic_a):
    assert clinic_a.tenant.timezone == "America/New_York"  # the clinic's pages elsewhere use its zone
    _record_boundaries(clinic_a.tenant)
    page = clinic_a.client_as(OFFICER).get(
        reverse("audit:search"), {"date_from": FIRST, "date_to": LAST, "target_type": "boundary"}
    )
    body = page.content.decode()
    assert page.status_code == 200
    assert "B-first" in body and "B-last" in body
    assert "B-before" not in body and "B-after" not in body
    assert ">2026-10-05 00:00:00<" in body and ">2026-10-20 23:59:59<" in body
    assert "2026-10-04 20:00:00" not in body  # New York time under a "UTC" heading


def test_the_event_page_shows_utc(clinic_a):
    _record_boundaries(clinic_a.tenant)
    event = AuditEvent.objects.get(target_id="B-first")
    body = clinic_a.client_as(OFFICER).get(reverse("audit:event", kwargs={"event_id": event.public_id})).content
    assert "2026-10-05 00:00:00.000000" in body.decode()


def test_console_export_page_file_header_and_command_mean_the_same_days(
    clinic_a, django_capture_on_commit_callbacks, tmp_path
):
    _record_boundaries(clinic_a.tenant)
    officer = clinic_a.client_as(OFFICER)
    with django_capture_on_commit_callbacks(execute=True):
        response = officer.post(reverse("audit:exports"), {"date_from": FIRST, "date_to": LAST})
    assert response.status_code == 302
    page = officer.get(response["Location"]).content.decode()
    assert "2026-10-05 to 2026-10-20 (UTC, both days included)" in page
    assert "end excluded" not in page
    history = officer.get(reverse("audit:exports")).content.decode()
    assert "2026-10-05 to 2026-10-20 (UTC, both days included)" in history
    call_command("export_audit", "--tenant", "alpha", "--from", FIRST, "--to", LAST, "--out", str(tmp_path / "cli"))
    with tenant_scope(clinic_a.tenant):
        console, command = AuditExport.objects.order_by("created_at")
    assert console.status == command.status == ExportStatus.READY
    assert (
        (console.date_from, console.date_to)
        == (command.date_from, command.date_to)
        == day_bounds(first=date(2026, 10, 5), last=date(2026, 10, 20))
    )
    for export in (console, command):
        header, targets = _exported_targets(clinic_a, export)
        assert (header["from"], header["to"], header["time_zone"]) == (FIRST, LAST, "UTC")
        assert header["ends_before"] == "2026-10-21T00:00:00.000000Z"
        assert targets == INSIDE
    requested = AuditEvent.objects.filter(action="audit.export_requested").order_by("sequence")
    assert [(e.details["from"], e.details["to"]) for e in requested] == [(FIRST, LAST), (FIRST, LAST)]


def test_the_verify_pages_read_in_utc_too(clinic_a, django_capture_on_commit_callbacks):
    officer = clinic_a.client_as(OFFICER)
    with time_machine.travel(datetime(2026, 10, 5, 0, 30, tzinfo=UTC), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            response = officer.post(reverse("audit:verify"))
        result = officer.get(response["Location"]).content.decode()
        history = officer.get(reverse("audit:verify")).content.decode()
    assert "2026-10-05 00:30:00" in result and "2026-10-04 20:30" not in result
    assert "2026-10-05 00:30" in history and "2026-10-04 20:30" not in history
