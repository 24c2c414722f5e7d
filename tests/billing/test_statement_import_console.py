"""Statement import in the console: upload, progress, results, the rejected-rows download,
and the background task. Alpha's billing manager imports; its front desk may not.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from audit.models import AuditEvent
from billing import tasks
from billing.import_models import ImportJob, ImportStatus
from billing.models import Statement
from billing.services import statement_import
from portal.tenancy.context import tenant_scope
from security.models import Role
from tests.conftest import Clinic

pytestmark = pytest.mark.django_db

BILLING = Role.BILLING_MANAGER.value
EXAMPLE = Path(__file__).resolve().parents[2] / "billing" / "demo_data" / "statements-example.csv"
UPLOAD = reverse("staff:statement-imports")


def upload(client, data: bytes, name: str = "statements.csv"):
    return client.post(UPLOAD, {"file": SimpleUploadedFile(name, data, "text/csv")})


def only_job(clinic: Clinic) -> ImportJob:
    with tenant_scope(clinic.tenant):
        return ImportJob.objects.get()


def upload_kept(clinic: Clinic, job: ImportJob) -> str:
    with tenant_scope(clinic.tenant):
        return job.upload


def test_a_billing_manager_uploads_and_sees_the_results_and_the_rejected_rows(
    clinic_a: Clinic, django_capture_on_commit_callbacks
) -> None:
    client = clinic_a.client_as(BILLING)
    assert b"Import statements" in client.get(UPLOAD).content
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(client, EXAMPLE.read_bytes())
    job = only_job(clinic_a)
    assert response.status_code == 302
    assert response["Location"] == reverse("staff:statement-import", kwargs={"job_id": job.public_id})
    assert job.status == ImportStatus.DONE and upload_kept(clinic_a, job) == "", "the uploaded file is not kept"
    page = client.get(response["Location"]).content.decode()
    assert 'id="count-accepted">6<' in page and 'id="count-rejected">5<' in page
    assert "Columns ignored:</strong> address_line1, city, state, postal_code, language" in page
    assert '<td class="num">7</td><td>statement_date is not a real date</td>' in page
    assert 'http-equiv="refresh"' not in page
    for phi in ("Nameless", "Sooner", "Fakehurst"):
        assert phi not in page, "the page lists line numbers and reasons, not the rows"
    listing = client.get(UPLOAD).content.decode()
    assert str(job.public_id) in listing

    report = client.get(reverse("staff:statement-import-report", kwargs={"job_id": job.public_id}))
    assert report.status_code == 200
    assert report["Cache-Control"] == "no-store"
    assert report["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(report.content.decode())))
    assert rows[0][:3] == ["line", "reasons", "statement_number"]
    assert [row[0] for row in rows[1:]] == ["7", "8", "9", "10", "12"]
    assert rows[2][3:5] == ["A-20006", ""] and "first_name is missing" in rows[2][1]
    event = AuditEvent.objects.get(action="statements.import_report_downloaded")
    assert event.target_id == str(job.public_id) and event.details == {"rows": 5}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xfe" + "statement_number".encode("utf-16-le"), "not UTF-8"),
        (b"statement_number,account_number\nST-1,A\n", "Required columns are missing: first_name"),
        (b"", "The submitted file is empty."),
    ],
)
def test_a_refused_file_shows_its_problem_on_the_field_and_imports_nothing(
    clinic_a: Clinic, django_capture_on_commit_callbacks, data: bytes, message: str
) -> None:
    with tenant_scope(clinic_a.tenant):
        before = Statement.objects.count()
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(clinic_a.client_as(BILLING), data)
    assert response.status_code == 400
    page = response.content.decode()
    assert 'class="field-error" id="id_file_error"' in page and message in page
    with tenant_scope(clinic_a.tenant):
        assert Statement.objects.count() == before
        assert not ImportJob.objects.exists()


def test_a_file_over_the_limit_is_refused_before_it_is_read(clinic_a: Clinic, monkeypatch: pytest.MonkeyPatch) -> None:
    from billing.views import staff_imports

    monkeypatch.setattr(staff_imports, "MAX_IMPORT_BYTES", 100)
    response = upload(clinic_a.client_as(BILLING), EXAMPLE.read_bytes())
    assert response.status_code == 400 and "the limit is 0 MB" in response.content.decode()
    assert AuditEvent.objects.get(action="statements.import_refused").details == {"reason": "too_large"}


def test_a_queued_import_shows_progress_and_refreshes_until_the_task_runs(
    clinic_a: Clinic, django_capture_on_commit_callbacks
) -> None:
    client = clinic_a.client_as(BILLING)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = upload(client, EXAMPLE.read_bytes())
    job = only_job(clinic_a)
    assert job.status == ImportStatus.QUEUED and upload_kept(clinic_a, job).startswith("statement_number,"), (
        "sealed until run"
    )
    page = client.get(response["Location"]).content.decode()
    assert '<meta http-equiv="refresh" content="2">' in page
    assert "Waiting to start" in page and 'value="0"' in page and "0 of 11 rows" in page
    assert len(callbacks) == 1
    callbacks[0]()  # the task, queued on commit (eager here)
    page = client.get(response["Location"]).content.decode()
    assert "refresh" not in page and 'value="100"' in page and "<strong>Done</strong>" in page
    assert tasks.statement_import_run(job.pk) == "done", "a redelivered task does nothing"
    assert AuditEvent.objects.filter(action="statements.imported").count() == 1


def test_a_task_that_fails_marks_the_job_and_drops_the_file(
    clinic_a: Clinic, django_capture_on_commit_callbacks, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**kwargs: object) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(statement_import, "statement_import_run", broken)
    client = clinic_a.client_as(BILLING)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = upload(client, EXAMPLE.read_bytes())
    with pytest.raises(RuntimeError):
        callbacks[0]()
    job = only_job(clinic_a)
    assert job.status == ImportStatus.FAILED and upload_kept(clinic_a, job) == ""
    assert "stopped on an unexpected error" in client.get(response["Location"]).content.decode()


def test_no_report_download_without_rejected_rows(clinic_a: Clinic, django_capture_on_commit_callbacks) -> None:
    client = clinic_a.client_as(BILLING)
    good = EXAMPLE.read_text().splitlines()[:3]
    with django_capture_on_commit_callbacks(execute=True):
        upload(client, ("\n".join(good) + "\n").encode())
    job = only_job(clinic_a)
    url = reverse("staff:statement-import-report", kwargs={"job_id": job.public_id})
    assert client.get(url)["Location"] == reverse("staff:statement-import", kwargs={"job_id": job.public_id})
    assert (
        "download-report"
        not in client.get(reverse("staff:statement-import", kwargs={"job_id": job.public_id})).content.decode()
    )


@pytest.mark.parametrize("role", [Role.FRONT_DESK.value, Role.COMPLIANCE_OFFICER.value])
def test_other_roles_cannot_import(clinic_a: Clinic, role: str) -> None:
    client = clinic_a.client_as(role)
    assert client.get(UPLOAD).status_code == 403
    assert upload(client, EXAMPLE.read_bytes()).status_code == 403
    assert "Imports</a>" not in client.get(reverse("staff:dashboard")).content.decode()
    assert "Imports</a>" in clinic_a.client_as(Role.CLINIC_ADMIN.value).get(reverse("staff:dashboard")).content.decode()
