"""Audit coverage scenarios: statement import (see tests/audit/scenarios.py).

Each uploads or downloads through the console as the alpha clinic's billing
manager. The import runs when the upload's transaction commits (`capture`
runs the on-commit callbacks, as eager Celery does in production-shaped runs).
"""

from __future__ import annotations

from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from billing.import_models import ImportJob
from portal.tenancy.context import tenant_scope
from security.models import Role
from tests.audit.scenarios import scenario
from tests.conftest import Clinic

BILLING = Role.BILLING_MANAGER.value
HEADER = b"statement_number,account_number,first_name,last_name,date_of_birth,statement_date,due_date,amount_due\n"
ROWS = b"IMP-1,IMP-ACC,Ima,Porter,1980-01-01,2026-11-02,2026-12-02,10.00\nIMP-2,IMP-ACC,Ima,Porter,1980-01-01,x,y,z\n"


def _upload(clinic: Clinic, data: bytes, capture: Any) -> Any:
    with capture(execute=True):
        return clinic.client_as(BILLING).post(
            reverse("staff:statement-imports"), {"file": SimpleUploadedFile("statements.csv", data, "text/csv")}
        )


@scenario("statements.imported")
def _imported(clinic: Clinic, capture: Any) -> None:
    assert _upload(clinic, HEADER + ROWS, capture).status_code == 302


@scenario("statements.import_refused")
def _refused(clinic: Clinic, capture: Any) -> None:
    assert _upload(clinic, HEADER[:40] + b"\n", capture).status_code == 400


@scenario("statements.import_report_downloaded")
def _report_downloaded(clinic: Clinic, capture: Any) -> None:
    _upload(clinic, HEADER + ROWS, capture)
    with tenant_scope(clinic.tenant):
        job = ImportJob.objects.get()
    response = clinic.client_as(BILLING).get(reverse("staff:statement-import-report", kwargs={"job_id": job.public_id}))
    assert response.status_code == 200
