"""The patient access report names the patient to those who may read patients, and audits that read.

audit sits below billing: billing registers a describer (audit.subjects) and
audit never imports billing.
"""

from __future__ import annotations

import ast
import uuid
from pathlib import Path

import pytest
from django.urls import reverse

from audit import subjects
from audit.models import AuditEvent
from audit.recorder import audit_record
from security.models import Role
from security.permissions import ROLE_PERMISSIONS
from tests.audit.scenarios_breakglass import _operator_client, _start

pytestmark = pytest.mark.django_db

OFFICER = Role.COMPLIANCE_OFFICER.value
AUDIT_PACKAGE = Path(__file__).resolve().parents[2] / "audit"
HIGHER_ROOMS = ("billing", "messaging", "monitoring", "portal.views", "portal.urls", "portal.dashboard")


def _report(client, patient_id):
    return client.get(reverse("audit:patient-report", kwargs={"patient_id": patient_id}))


def _name_reads(patient_id) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="patient.name_viewed", target_id=str(patient_id)))


@pytest.fixture
def officer_reads_patients(monkeypatch):
    monkeypatch.setitem(ROLE_PERMISSIONS, Role.COMPLIANCE_OFFICER, ROLE_PERMISSIONS[OFFICER] | {"patients.view"})


def test_only_someone_who_may_read_patients_sees_the_name_and_the_read_is_audited(clinic_a, monkeypatch):
    patient = clinic_a.patient
    body = _report(clinic_a.client_as(OFFICER), patient.public_id).content.decode()
    assert str(patient.public_id) in body
    assert patient.first_name not in body and patient.last_name not in body
    assert _name_reads(patient.public_id) == []

    monkeypatch.setitem(ROLE_PERMISSIONS, Role.COMPLIANCE_OFFICER, ROLE_PERMISSIONS[OFFICER] | {"patients.view"})
    response = _report(clinic_a.client_as(OFFICER), patient.public_id)
    assert response.status_code == 200
    assert f"Who accessed {patient.first_name} {patient.last_name}" in response.content.decode()
    assert response["Cache-Control"] == "no-store"
    [read] = _name_reads(patient.public_id)
    assert read.target_type == "patient" and read.actor_user_id == clinic_a.user(OFFICER).public_id
    assert read.actor_role == OFFICER and read.details == {"shown_on": "audit.patient_report"}
    # The read itself shows up in the patient's access report.
    again = _report(clinic_a.client_as(OFFICER), patient.public_id).content.decode()
    assert '<span title="patient.name_viewed">Patient name viewed</span>' in again


def test_an_operator_on_emergency_access_may_read_patients_and_sees_the_name(clinic_a):
    client = _operator_client(clinic_a)
    _start(clinic_a, client)
    response = _report(client, clinic_a.patient.public_id)
    assert response.status_code == 200
    assert clinic_a.patient.last_name in response.content.decode()
    [read] = _name_reads(clinic_a.patient.public_id)
    assert read.actor_role == "break_glass"


def test_unknown_and_other_clinics_patients_are_404_and_no_name_is_read(clinic_a, clinic_b, officer_reads_patients):
    officer = clinic_a.client_as(OFFICER)
    assert _report(officer, clinic_b.patient.public_id).status_code == 404
    assert _report(officer, uuid.uuid4()).status_code == 404
    assert not AuditEvent.objects.filter(action__in=["patient.name_viewed", "audit.patient_report"]).exists()
    assert _report(officer, clinic_a.patient.public_id).status_code == 200
    assert len(_name_reads(clinic_a.patient.public_id)) == 1


def test_without_a_describer_the_report_works_from_the_trail_alone(clinic_a, monkeypatch, officer_reads_patients):
    monkeypatch.setattr(subjects, "_DESCRIBERS", {})
    named = str(uuid.uuid4())
    audit_record(
        action="ledger.viewed",
        tenant=clinic_a.tenant,
        actor_role="front_desk",
        target_type="payment_list",
        details={"patients": [named]},
    )
    officer = clinic_a.client_as(OFFICER)
    assert _report(officer, named).status_code == 200
    assert _report(officer, uuid.uuid4()).status_code == 404
    assert _name_reads(named) == []


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_audit_package_imports_no_higher_room():
    upward = {
        f"{path.relative_to(AUDIT_PACKAGE.parent)}: {name}"
        for path in AUDIT_PACKAGE.rglob("*.py")
        for name in _imports(path)
        if any(name == room or name.startswith(room + ".") for room in HIGHER_ROOMS)
    }
    assert not upward, sorted(upward)
