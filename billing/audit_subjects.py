"""What billing tells the audit console about its records (audit.subjects).

The console's "who accessed this patient" report names a patient only to a
user who may read patients (`patients.view`); the console records that read
as `patient.name_viewed`. Registered in BillingConfig.ready.
"""

from __future__ import annotations

from uuid import UUID

from audit.subjects import SubjectDescriber, register_subject_describer
from billing.access import access_patient_by_uuid
from billing.models import Patient
from portal.models import Tenant


def _patient_exists(tenant: Tenant, uuid: UUID) -> bool:
    return Patient.objects.filter(tenant=tenant, public_id=uuid).exists()


def _patient_name(tenant: Tenant, uuid: UUID) -> str:
    patient = access_patient_by_uuid(tenant=tenant, uuid=uuid)
    return f"{patient.first_name} {patient.last_name}".strip()


PATIENT_DESCRIBER = SubjectDescriber(
    permission="patients.view",
    read_action="patient.name_viewed",
    exists=_patient_exists,
    name=_patient_name,
)


def register() -> None:
    register_subject_describer("patient", PATIENT_DESCRIBER)
