"""The staff patient list and search: exact keys through blind indexes, POST only, audited without the text."""

from __future__ import annotations

import datetime
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.models import AuditEvent
from billing.services.patient_search import patient_search
from portal.tenancy.context import tenant_scope
from security.crypto import cipher
from tests.conftest import Clinic
from tests.factories import PatientFactory, StatementFactory

pytestmark = pytest.mark.django_db

DOB = datetime.date(1961, 7, 4)


@pytest.fixture
def patients(clinic_a: Clinic, clinic_b: Clinic) -> dict[str, object]:
    ada = PatientFactory(
        tenant=clinic_a.tenant,
        first_name="Ada",
        last_name="Lovelace",
        date_of_birth=DOB,
        email="Ada.Lovelace@Example.org",
        phone="+1 (202) 555-0143",
        account_number="MRN-7731",
    )
    byron = PatientFactory(
        tenant=clinic_a.tenant, first_name="Byron", last_name="Lovelace", date_of_birth=datetime.date(1970, 1, 2)
    )
    van_dyke = PatientFactory(tenant=clinic_a.tenant, first_name="Dick", last_name="Van Dyke")
    # Same name and date of birth at the other clinic: never found from clinic A.
    other = PatientFactory(tenant=clinic_b.tenant, first_name="Ada", last_name="Lovelace", date_of_birth=DOB)
    StatementFactory(tenant=clinic_a.tenant, patient=ada, number="LV-88001")
    StatementFactory(tenant=clinic_b.tenant, patient=other, number="LV-99001")
    return {"ada": ada, "byron": byron, "van_dyke": van_dyke, "other": other}


def _found(clinic: Clinic, text: str, date_of_birth: datetime.date | None = None) -> list[str]:
    with tenant_scope(clinic.tenant):
        search = patient_search(tenant=clinic.tenant, text=text, date_of_birth=date_of_birth)
        # The fields themselves, not the listing the search sorted by: checks the projection too.
        return [f"{patient.first_name} {patient.last_name}" for patient in search.patients]


@pytest.mark.usefixtures("patients")
@pytest.mark.parametrize(
    ("text", "date_of_birth", "expected"),
    [
        ("lovelace", None, ["Ada Lovelace", "Byron Lovelace"]),  # case
        ("  LOVELACE ", None, ["Ada Lovelace", "Byron Lovelace"]),  # spaces
        ("Ada Lovelace", None, ["Ada Lovelace"]),  # first name narrows the last-name match
        ("lovelace", DOB, ["Ada Lovelace"]),  # last name + date of birth index
        ("van  dyke", None, ["Dick Van Dyke"]),  # a two-word last name, as a whole
        ("ada.lovelace@example.ORG", None, ["Ada Lovelace"]),  # email, any case
        ("202.555.0143", None, ["Ada Lovelace"]),  # phone, another format
        ("12025550143", None, ["Ada Lovelace"]),
        ("MRN-7731", None, ["Ada Lovelace"]),  # account number
        ("Lovel", None, []),  # exact keys only: no partial matches
        ("byron lovelace", DOB, []),  # right name, wrong date of birth
        ("ada", None, ["Ada Lovelace"]),  # a first name alone
        ("  BYRON ", None, ["Byron Lovelace"]),
        ("Ada", DOB, ["Ada Lovelace"]),  # first name + date of birth index
        ("Byron", DOB, []),  # right first name, wrong date of birth
        ("lv 88001", None, ["Ada Lovelace"]),  # a statement number, as printed or typed
        ("LV-88001", DOB, ["Ada Lovelace"]),
        ("LV-88001", datetime.date(1970, 1, 2), []),
        ("LV-99001", None, []),  # the other clinic's statement
        ("", datetime.date(1970, 1, 2), ["Byron Lovelace"]),  # a date of birth alone
    ],
)
def test_search_finds_patients_by_exact_keys_after_normalisation(
    clinic_a: Clinic, text: str, date_of_birth: datetime.date | None, expected: list[str]
) -> None:
    assert _found(clinic_a, text, date_of_birth) == expected


@pytest.mark.usefixtures("patients")
def test_search_never_crosses_clinics(clinic_b: Clinic) -> None:
    assert _found(clinic_b, "Lovelace") == ["Ada Lovelace"]
    assert _found(clinic_b, "MRN-7731") == []


def test_search_is_a_post_and_is_audited_with_ids_not_text(clinic_a: Clinic, patients: dict[str, object]) -> None:
    client = clinic_a.client_as("front_desk")
    response = client.post(reverse("staff:patients"), {"q": "Lovelace", "date_of_birth": "07/04/1961"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "Lovelace, Ada" in body and "Byron" not in body and "1 patient found" in body
    event = AuditEvent.objects.filter(tenant=clinic_a.tenant, action="patient.searched").get()
    ada = patients["ada"]
    assert event.details["patients"] == [str(ada.public_id)]  # type: ignore[attr-defined]
    assert event.details["kinds"] == "account,statement,name_dob,first_name_dob"
    assert event.details["with_date_of_birth"] is True
    assert "Lovelace" not in str(event.details) and "1961" not in str(event.details)
    assert "Lovelace" not in response.request["PATH_INFO"] + response.request.get("QUERY_STRING", "")


def test_browsing_lists_newest_first_pages_of_fifty_and_audits_the_page_shown(clinic_a: Clinic) -> None:
    for n in range(55):
        PatientFactory(tenant=clinic_a.tenant, first_name=f"P{n}", last_name="Pageful")
    client = clinic_a.client_as("billing_manager")
    first = client.get(reverse("staff:patients"))
    second = client.get(reverse("staff:patients") + "?page=2")
    assert first.status_code == second.status_code == 200
    assert "Pageful, P54" in first.content.decode() and "Page 1 of 2" in first.content.decode()
    events = list(AuditEvent.objects.filter(tenant=clinic_a.tenant, action="patient.list_viewed").order_by("sequence"))
    assert [len(e.details["patients"]) for e in events] == [50, 6]  # 55 new + the clinic's own patient
    assert [e.details["page"] for e in events] == [1, 2]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"q": "Lovelace", "date_of_birth": "not a date"}, "Enter the date of birth as a date"),
        ({"q": "  ", "date_of_birth": ""}, "Enter a name, account or statement number, email or phone, or a date"),
        ({"q": "x" * 255}, "at most 254 characters"),
    ],
)
def test_bad_search_input_shows_a_message_lists_nothing_and_records_nothing(
    clinic_a: Clinic, patients: dict[str, object], data: dict[str, str], message: str
) -> None:
    response = clinic_a.client_as("front_desk").post(reverse("staff:patients"), data)
    body = response.content.decode()
    assert response.status_code == 200 and message in body and 'id="patients"' not in body
    assert not AuditEvent.objects.filter(action__startswith="patient.").exists()


def test_roles_without_patient_access_cannot_list_or_search(clinic_a: Clinic) -> None:
    officer = clinic_a.client_as("compliance_officer")
    assert officer.get(reverse("staff:patients")).status_code == 403
    assert officer.post(reverse("staff:patients"), {"q": "Lovelace"}).status_code == 403


def test_the_list_page_opens_one_ciphertext_per_row_and_loads_no_other_phi_column(clinic_a: Clinic) -> None:
    for n in range(12):
        PatientFactory(tenant=clinic_a.tenant, first_name=f"Q{n}", last_name="Quietly", phone="")
    client = clinic_a.client_as("billing_manager")
    client.get(reverse("staff:patients"))  # warm: session, keys
    with (
        mock.patch.object(cipher, "open_at", wraps=cipher.open_at) as opened,
        CaptureQueriesContext(connection) as queries,
    ):
        response = client.get(reverse("staff:patients"))
    page = response.content.decode()
    assert "Quietly, Q11" in page and "Quietly, Q0" in page
    rows = page.count("<tr>") - 1  # minus the header row
    assert rows == 13  # 12 new + the clinic's own patient
    assert opened.call_count == rows  # the listing only: not first_name, last_name, ... one by one
    patient_selects = [q["sql"] for q in queries.captured_queries if 'FROM "billing_patient"' in q["sql"]]
    assert len(patient_selects) == 2  # the count and the page: no query per row for a deferred column
    assert all('"first_name"' not in sql and '"phone_index"' not in sql for sql in patient_selects)


def test_search_orders_and_filters_by_the_listing(clinic_a: Clinic, patients: dict[str, object]) -> None:
    with tenant_scope(clinic_a.tenant), mock.patch.object(cipher, "open_at", wraps=cipher.open_at) as opened:
        search = patient_search(tenant=clinic_a.tenant, text="Ada Lovelace", date_of_birth=None)
    # Two Lovelaces at this clinic match the last name; each is opened once (its listing), then filtered.
    assert opened.call_count == 2
    assert [patient.listing.first_name for patient in search.patients] == ["Ada"]


def test_a_partial_save_of_a_source_keeps_its_indexes_and_listing_current(
    clinic_a: Clinic, patients: dict[str, object]
) -> None:
    from billing.models import Patient

    with tenant_scope(clinic_a.tenant):
        ada = Patient.objects.get(pk=patients["ada"].pk)  # type: ignore[attr-defined]
        ada.phone = "(301) 555-0199"
        ada.last_name = "King"
        ada.save(update_fields=["phone", "last_name"])
    assert _found(clinic_a, "301-555-0199") == ["Ada King"]
    assert _found(clinic_a, "King", DOB) == ["Ada King"]
    assert _found(clinic_a, "202 555 0143") == [] and _found(clinic_a, "Lovelace") == ["Byron Lovelace"]
    with tenant_scope(clinic_a.tenant):
        assert Patient.objects.get(pk=ada.pk).listing.last_name == "King"


def test_no_match_says_so_and_names_the_kinds_of_key_tried(clinic_a: Clinic, patients: dict[str, object]) -> None:
    response = clinic_a.client_as("front_desk").post(reverse("staff:patients"), {"q": "Nobody"})
    body = response.content.decode()
    assert response.status_code == 200 and "No patients found." in body and 'id="patients"' not in body
    assert "Searched for an exact account number, statement number, last name or first name." in body
    event = AuditEvent.objects.filter(tenant=clinic_a.tenant, action="patient.searched").get()
    assert event.details["patients"] == [] and event.details["matches"] == 0
    assert "Nobody" not in str(event.details)


def test_a_date_of_birth_alone_lists_a_bounded_page_and_says_when_more_matched(clinic_a: Clinic) -> None:
    born = datetime.date(1990, 5, 17)
    for n in range(51):
        PatientFactory(tenant=clinic_a.tenant, first_name=f"D{n:02d}", last_name="Sameday", date_of_birth=born)
    PatientFactory(
        tenant=clinic_a.tenant, first_name="Other", last_name="Day", date_of_birth=datetime.date(1990, 5, 18)
    )
    response = clinic_a.client_as("front_desk").post(reverse("staff:patients"), {"q": "", "date_of_birth": "5/17/1990"})
    body = response.content.decode()
    assert response.status_code == 200 and "patients found" not in body
    assert "More than 50 patients have this date of birth; the first 50 are listed." in body
    assert "Other" not in body and body.count("Sameday, D") == 50
    event = AuditEvent.objects.filter(tenant=clinic_a.tenant, action="patient.searched").get()
    assert event.details["kinds"] == "date_of_birth" and event.details["truncated"] is True
    # The date typed is never recorded (ids only); a date's shape cannot occur inside a UUID.
    assert len(event.details["patients"]) == 50 and "1990-05-17" not in str(event.details)
    assert not set(event.details) - {"kinds", "with_date_of_birth", "matches", "truncated", "page", "patients"}

    few = clinic_a.client_as("front_desk").post(reverse("staff:patients"), {"date_of_birth": "1990-05-18"})
    assert "1 patient found." in few.content.decode() and "Day, Other" in few.content.decode()
    assert "More than" not in few.content.decode()


def test_the_search_keys_migration_fills_existing_rows(clinic_a: Clinic, patients: dict[str, object]) -> None:
    """billing 0006 computes the new indexes of rows saved before it, exactly as a save would."""
    import importlib

    from django.apps import apps

    from billing.models import Patient

    columns = ("first_name_index", "first_name_dob_index", "date_of_birth_index")
    with tenant_scope(clinic_a.tenant):
        saved = {p.pk: tuple(getattr(p, c) for c in columns) for p in Patient.objects.filter(tenant=clinic_a.tenant)}
    assert all(all(value.startswith("b1:") for value in values) for values in saved.values())
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE billing_patient SET first_name_index = '', first_name_dob_index = '', date_of_birth_index = ''"
        )
    assert _found(clinic_a, "Ada") == [] and _found(clinic_a, "", DOB) == []

    fill = importlib.import_module("billing.migrations.0006_patient_search_keys").fill_search_keys
    with connection.schema_editor() as editor:
        fill(apps, editor)
    with tenant_scope(clinic_a.tenant):
        filled = {p.pk: tuple(getattr(p, c) for c in columns) for p in Patient.objects.filter(tenant=clinic_a.tenant)}
    assert filled == saved
    assert _found(clinic_a, "Ada") == ["Ada Lovelace"] and _found(clinic_a, "", DOB) == ["Ada Lovelace"]
