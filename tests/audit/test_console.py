"""The compliance console: who may see it, what it shows, and that it is audited."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditEvent, AuditVerification, VerificationStatus
from audit.recorder import audit_record
from portal.tenancy.context import tenant_scope
from security.models import Role
from tests.audit.conftest import fill

pytestmark = pytest.mark.django_db

OFFICER = Role.COMPLIANCE_OFFICER.value


def _urls(clinic):
    event = fill(clinic.tenant, 1)[0]
    return [
        reverse("audit:search"),
        reverse("audit:event", kwargs={"event_id": event.public_id}),
        reverse("audit:patient-report", kwargs={"patient_id": clinic.patient.public_id}),
        reverse("audit:user-report", kwargs={"user_id": clinic.user(OFFICER).public_id}),
        reverse("audit:verify"),
        reverse("audit:exports"),
    ]


@pytest.mark.parametrize("role", [r.value for r in Role if r != Role.COMPLIANCE_OFFICER])
def test_only_compliance_officers_may_open_the_console(clinic_a, role):
    client = clinic_a.client_as(role)
    for url in _urls(clinic_a):
        assert client.get(url).status_code == 403, url


def test_outsiders_and_anonymous_visitors_are_kept_out(clinic_a, outsider):
    for url in _urls(clinic_a):
        assert clinic_a.client(outsider).get(url).status_code == 403
        assert clinic_a.client().get(url).status_code == 302


def test_another_clinics_events_patients_and_people_are_404(clinic_a, clinic_b):
    officer = clinic_a.client_as(OFFICER)
    theirs = fill(clinic_b.tenant, 1)[0]
    assert officer.get(reverse("audit:event", kwargs={"event_id": theirs.public_id})).status_code == 404
    assert (
        officer.get(reverse("audit:patient-report", kwargs={"patient_id": clinic_b.patient.public_id})).status_code
        == 404
    )
    assert (
        officer.get(reverse("audit:user-report", kwargs={"user_id": clinic_b.user(OFFICER).public_id})).status_code
        == 404
    )


def test_search_filters_pages_and_audits_itself(clinic_a):
    fill(clinic_a.tenant, 60, action="receipt.viewed")
    fill(clinic_a.tenant, 3, action="statement.lookup")
    officer = clinic_a.client_as(OFFICER)
    page = officer.get(reverse("audit:search"))
    assert page.status_code == 200
    assert "Page 1 of 2" in page.content.decode()
    lookups = officer.get(
        reverse("audit:search"), {"date_from": "2000-01-01", "date_to": "2099-12-31", "action": "statement.lookup"}
    )
    assert lookups.status_code == 400  # longer than the hot period
    today = AuditEvent.objects.first().occurred_at.date().isoformat()
    lookups = officer.get(reverse("audit:search"), {"date_from": today, "date_to": today, "action": "statement.lookup"})
    assert lookups.status_code == 200
    assert lookups.content.decode().count('<span title="statement.lookup">Statement looked up</span>') == 3
    searched = AuditEvent.objects.filter(action="audit.searched").order_by("sequence")
    assert searched.count() == 2
    last = searched.last()
    assert last.actor_user_id == clinic_a.user(OFFICER).public_id
    assert last.details["action"] == "statement.lookup" and last.details["results"] == 3


@pytest.mark.parametrize(
    "params",
    [
        {"date_from": "2026-05-01", "date_to": "2026-04-01"},
        {"date_from": "99999-01-01", "date_to": "2026-04-01"},
        {"date_from": "1900-01-01", "date_to": "1900-01-02"},
        {"date_from": "yesterday", "date_to": ""},
        {"date_from": "2026-01-01", "date_to": "2026-01-02", "patient": "not-a-uuid"},
        {"date_from": "2026-01-01", "date_to": "2026-01-02", "action": "drop table"},
        {"date_from": "2026-01-01", "date_to": "2026-01-02", "actor": "00000000-0000-0000-0000-000000000000"},
        {"date_from": "2026-01-01", "date_to": "2026-01-02", "target_type": "<script>"},
    ],
)
def test_bad_filters_get_a_clear_400_not_a_server_error(clinic_a, params):
    response = clinic_a.client_as(OFFICER).get(reverse("audit:search"), params)
    assert response.status_code == 400
    assert 'class="field-error"' in response.content.decode()


def test_a_nonsense_page_number_shows_a_page(clinic_a):
    fill(clinic_a.tenant, 3)
    response = clinic_a.client_as(OFFICER).get(reverse("audit:search"), {"page": "abc"})
    assert response.status_code == 200


def test_who_accessed_this_patient_includes_lists_that_showed_them(clinic_a):
    patient = str(clinic_a.patient.public_id)
    audit_record(
        action="ledger.viewed",
        tenant=clinic_a.tenant,
        actor=clinic_a.user("front_desk"),
        actor_role="front_desk",
        target_type="payment_list",
        details={"patients": [patient]},
    )
    audit_record(
        action="ledger.viewed",
        tenant=clinic_a.tenant,
        actor=clinic_a.user("billing_manager"),
        actor_role="billing_manager",
        target_type="patient",
        target_id=patient,
    )
    fill(clinic_a.tenant, 2)
    response = clinic_a.client_as(OFFICER).get(reverse("audit:patient-report", kwargs={"patient_id": patient}))
    body = response.content.decode()
    assert response.status_code == 200
    assert "front_desk@alpha.example" in body and "billing_manager@alpha.example" in body
    assert body.count('<span title="ledger.viewed">') == 2
    assert clinic_a.patient.first_name not in body  # the report names the patient by id only
    assert AuditEvent.objects.filter(action="audit.patient_report", target_id=patient).count() == 1


def test_what_did_this_user_do(clinic_a):
    desk = clinic_a.user("front_desk")
    audit_record(action="receipt.viewed", tenant=clinic_a.tenant, actor=desk, actor_role="front_desk")
    fill(clinic_a.tenant, 2)
    response = clinic_a.client_as(OFFICER).get(reverse("audit:user-report", kwargs={"user_id": desk.public_id}))
    assert response.status_code == 200
    assert response.content.decode().count('<span title="receipt.viewed">') == 1
    assert AuditEvent.objects.filter(action="audit.user_report", target_id=str(desk.public_id)).count() == 1


def test_event_detail_shows_hashes_and_is_audited(clinic_a):
    event = fill(clinic_a.tenant, 1)[0]
    response = clinic_a.client_as(OFFICER).get(reverse("audit:event", kwargs={"event_id": event.public_id}))
    assert response.status_code == 200
    assert event.hash in response.content.decode()
    assert AuditEvent.objects.filter(action="audit.event_viewed", target_id=str(event.public_id)).count() == 1


def test_the_verify_button_runs_and_shows_the_result(clinic_a, django_capture_on_commit_callbacks, tamper):
    fill(clinic_a.tenant, 5)
    officer = clinic_a.client_as(OFFICER)
    with django_capture_on_commit_callbacks(execute=True):
        response = officer.post(reverse("audit:verify"))
    assert response.status_code == 302
    page = officer.get(response["Location"])
    assert "Intact" in page.content.decode()
    with tamper() as sql:
        sql(
            "UPDATE audit_auditevent SET outcome = 'failure' WHERE tenant_id = %s AND sequence = 3",
            [clinic_a.tenant.pk],
        )
    with django_capture_on_commit_callbacks(execute=True):
        response = officer.post(reverse("audit:verify"))
    page = officer.get(response["Location"]).content.decode()
    assert "Broken" in page and "sequence 3" in page
    with tenant_scope(clinic_a.tenant):
        latest = AuditVerification.objects.first()
    assert latest.status == VerificationStatus.FAILED and latest.first_bad_sequence == 3
    assert AuditEvent.objects.filter(action="audit.verify_requested").count() == 2
    assert list(
        AuditEvent.objects.filter(action="audit.verified").values_list("outcome", flat=True).order_by("sequence")
    ) == ["success", "failure"]
