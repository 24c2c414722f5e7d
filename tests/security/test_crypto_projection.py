"""Patient.listing: a sealed projection of the list columns, equal to its sources after every write."""

from __future__ import annotations

import datetime
import importlib
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.test import override_settings

from billing.models import Patient
from portal.models import Tenant
from portal.tenancy.context import tenant_scope
from security.crypto import cipher
from security.crypto.errors import (
    EncryptedFieldUsageError,
    TamperedCiphertextError,
    WrongRowError,
    WrongTenantError,
)
from security.crypto.fields import encrypted_fields
from security.crypto.models import KeyPurpose, RotationStatus
from security.crypto.projection import EncryptedProjectionField, ProjectedValues, projection_plaintext
from security.crypto.rotation import data_key_rotate
from tests.security import crypto_support
from tests.security.crypto_support import latest_migration, migrate_to

local_keys_fixture = crypto_support.local_keys_fixture
two_tenants_fixture = crypto_support.two_tenants_fixture

pytestmark = pytest.mark.usefixtures("local_keys")

SOURCES = ("first_name", "last_name", "date_of_birth", "account_number", "phone")
DOB = datetime.date(1961, 3, 14)


def _patient(tenant: Tenant, **values: Any) -> Patient:
    defaults = {
        "account_number": "P-0001",
        "first_name": "Zoë",
        "last_name": "Quartermaine",
        "date_of_birth": DOB,
        "phone": "+12025550199",
        "email": "zoe@example.com",
    }
    with tenant_scope(tenant):
        patient = Patient(tenant=tenant, **{**defaults, **values})
        patient.save()
    return patient


def _load(tenant: Tenant, pk: int) -> Patient:
    with tenant_scope(tenant):
        return Patient.objects.get(pk=pk)


def _raw(pk: int, column: str = "listing") -> Any:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM billing_patient WHERE id = %s", [pk])  # noqa: S608
        return cursor.fetchone()[0]


def _set_raw(pk: int, value: Any, column: str = "listing") -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE billing_patient SET {column} = %s WHERE id = %s", [value, pk])  # noqa: S608


def _assert_matches_sources(tenant: Tenant, patient: Patient) -> None:
    """The projection, read fresh from the database, equals the sources read fresh (values and types)."""
    fresh = _load(tenant, patient.pk)
    with tenant_scope(tenant):
        projected = dict(fresh.listing)
        assert projected == {source: getattr(_load(tenant, patient.pk), source) for source in SOURCES}
        assert isinstance(projected["date_of_birth"], datetime.date)


@pytest.mark.django_db
def test_projection_after_create_is_sealed_and_equals_the_sources(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    patient = _patient(alpha)
    _assert_matches_sources(alpha, patient)
    # The saved instance reads the projection without opening it again.
    assert patient.listing.first_name == "Zoë" and patient.listing["date_of_birth"] == DOB
    stored = _raw(patient.pk)
    assert stored.startswith(f"s1:{alpha.pk}:phi:1:")
    # Whole values only: two letters ("Zo") turn up in random base64 about once in forty runs.
    for clear in ("Zoë", "Zo\\u00eb", "Quartermaine", "1961-03-14", "P-0001", "2025550199"):
        assert clear not in stored


@pytest.mark.django_db
@pytest.mark.parametrize(
    "changes",
    [
        {"first_name": "Ada"},
        {"last_name": "Lovelace-Byron"},
        {"date_of_birth": datetime.date(1815, 12, 10)},
        {"account_number": "P-9999"},
        {"phone": ""},
        {"first_name": "", "last_name": "", "phone": ""},
        {"email": "other@example.com"},  # not a source: projection unchanged but re-sealed
    ],
    ids=["first", "last", "dob", "account", "blank-phone", "all-blank", "non-source"],
)
def test_projection_follows_every_save(two_tenants: tuple[Tenant, Tenant], changes: dict[str, Any]) -> None:
    alpha, _ = two_tenants
    patient = _patient(alpha)
    before = _raw(patient.pk)
    with tenant_scope(alpha):
        loaded = Patient.objects.get(pk=patient.pk)
        for name, value in changes.items():
            setattr(loaded, name, value)
        loaded.save()
    _assert_matches_sources(alpha, patient)
    assert _raw(patient.pk) != before  # every save seals afresh
    for name, value in changes.items():
        if name in SOURCES:
            assert getattr(_load(alpha, patient.pk).listing, name) == value


@pytest.mark.django_db
def test_partial_saves_of_a_source_rewrite_the_projection(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    patient = _patient(alpha)
    before = _raw(patient.pk)
    with tenant_scope(alpha):
        patient.phone = "+12025550100"
        patient.save(update_fields=["phone", "phone_index"])  # Patient.save adds "listing"
    assert _raw(patient.pk) != before
    assert _load(alpha, patient.pk).listing.phone == "+12025550100"
    with tenant_scope(alpha):
        patient.email = "new@example.com"
        sealed = _raw(patient.pk)
        patient.save(update_fields=["email", "email_index"])  # not a source: listing untouched
    assert _raw(patient.pk) == sealed
    _assert_matches_sources(alpha, patient)


@pytest.mark.django_db
def test_a_partial_save_that_skips_the_projection_is_refused(two_tenants: tuple[Tenant, Tenant]) -> None:
    # A model whose save() does not add its projections (save_base skips Patient.save) is stopped.
    alpha, _ = two_tenants
    patient = _patient(alpha)
    with tenant_scope(alpha):
        patient.first_name = "Eve"
        with pytest.raises(EncryptedFieldUsageError, match="add 'listing'"):
            patient.save_base(update_fields=["first_name"])
    assert _load(alpha, patient.pk).listing.first_name == "Zoë"


@pytest.mark.django_db
def test_queryset_writes_of_the_projection_are_refused(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    patient = _patient(alpha)
    with tenant_scope(alpha):
        with pytest.raises(EncryptedFieldUsageError):
            Patient.objects.filter(pk=patient.pk).update(listing="anything")
        with pytest.raises(EncryptedFieldUsageError):
            Patient.objects.bulk_update([patient], ["listing"])
        with pytest.raises(EncryptedFieldUsageError):
            Patient.objects.filter(listing="x").exists()
        with pytest.raises(AttributeError, match="read-only"):
            patient.listing.first_name = "Eve"  # type: ignore[misc]


@pytest.mark.django_db
def test_a_list_opens_one_ciphertext_per_row(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    for n in range(4):
        _patient(alpha, account_number=f"P-{n}")
    with tenant_scope(alpha), mock.patch.object(cipher, "open_at", wraps=cipher.open_at) as opened:
        rows = [tuple(p.listing[source] for source in SOURCES) for p in Patient.objects.all()]
    assert len(rows) == 4 and opened.call_count == 4


@pytest.mark.django_db
def test_projection_copied_to_another_row_or_field_fails(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    first, second = _patient(alpha), _patient(alpha, account_number="P-0002")
    _set_raw(second.pk, _raw(first.pk))
    with tenant_scope(alpha), pytest.raises(WrongRowError):
        _ = _load(alpha, second.pk).listing
    # Into another encrypted column of the same row.
    _set_raw(first.pk, _raw(first.pk), column="first_name")
    with tenant_scope(alpha), pytest.raises(WrongRowError):
        _ = _load(alpha, first.pk).first_name


@pytest.mark.django_db
def test_projection_copied_to_another_tenant_fails(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, beta = two_tenants
    theirs, ours = _patient(alpha), _patient(beta)
    _set_raw(ours.pk, _raw(theirs.pk))
    with tenant_scope(beta), pytest.raises(WrongTenantError):
        _ = _load(beta, ours.pk).listing


@pytest.mark.django_db
# Not the last base64 character: up to 4 of its bits are padding that decoders
# ignore, so changing only those would leave the ciphertext bytes as they were.
@pytest.mark.parametrize("position", [-2, -12, -30])
def test_a_tampered_byte_fails(two_tenants: tuple[Tenant, Tenant], position: int) -> None:
    alpha, _ = two_tenants
    patient = _patient(alpha)
    stored = _raw(patient.pk)
    flipped = "A" if stored[position] != "A" else "B"
    _set_raw(patient.pk, stored[:position] + flipped + stored[len(stored) + position + 1 :])
    with tenant_scope(alpha), pytest.raises(TamperedCiphertextError):
        _ = _load(alpha, patient.pk).listing


@pytest.mark.django_db
def test_a_row_with_no_projection_stored_is_projected_from_its_sources(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    patient = _patient(alpha, phone="")
    _set_raw(patient.pk, None)
    with tenant_scope(alpha):
        loaded = _load(alpha, patient.pk)
        assert loaded.listing.phone == "" and loaded.listing.date_of_birth == DOB
        loaded.save()
    assert _raw(patient.pk).startswith(f"s1:{alpha.pk}:phi:")
    _assert_matches_sources(alpha, patient)


def test_null_sources_stay_none_and_values_are_typed() -> None:
    field = Patient._meta.get_field("listing")
    assert isinstance(field, EncryptedProjectionField)
    texts = dict.fromkeys(SOURCES, None) | {"date_of_birth": "2001-02-03", "first_name": "Ann"}
    values = field.from_plaintext_bytes(projection_plaintext(texts))
    assert isinstance(values, ProjectedValues)
    assert values.date_of_birth == datetime.date(2001, 2, 3) and values.phone is None and values.first_name == "Ann"
    assert "Ann" not in repr(values) and "2001" not in str(values)
    with pytest.raises(EncryptedFieldUsageError, match="other sources"):
        field.from_plaintext_bytes(projection_plaintext({"first_name": "Ann"}))


def test_the_projection_is_a_phi_field_for_rotation() -> None:
    assert Patient._meta.get_field("listing") in encrypted_fields(Patient, KeyPurpose.PHI)
    assert Patient._meta.get_field("listing") not in encrypted_fields(Patient, KeyPurpose.SECRET)


@pytest.mark.django_db
def test_rotation_reseals_the_projection(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    patients = [_patient(alpha, account_number=f"R-{n}") for n in range(3)]
    with override_settings(SETTLE_ACTIVE_KEY_CACHE_SECONDS=0):
        rotation = data_key_rotate(tenant=alpha, purpose=KeyPurpose.PHI, batch_size=2)
    assert rotation.status == RotationStatus.FINISHED and rotation.to_version == 2
    for patient in patients:
        assert _raw(patient.pk).startswith(f"s1:{alpha.pk}:phi:2:")
        _assert_matches_sources(alpha, patient)


# -- billing 0005 fills the column for existing rows --

BEFORE = ("billing", "0004_encrypt_setup_intent_secret")
AFTER = ("billing", "0005_patient_listing")


@pytest.fixture
def migrated_back_and_forth(transactional_db: None) -> Iterator[None]:
    yield
    migrate_to(latest_migration("billing"))  # leave the schema as the other tests expect it


@pytest.mark.usefixtures("migrated_back_and_forth")
def test_migration_fills_existing_rows_and_is_idempotent(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, beta = two_tenants
    patients = [
        (alpha, _patient(alpha)),
        (alpha, _patient(alpha, account_number="P-2", phone="")),
        (beta, _patient(beta)),
    ]
    migrate_to(BEFORE)  # drops the column: the rows are now "existing rows" without a projection
    migrate_to(AFTER)
    stored = {patient.pk: _raw(patient.pk) for _, patient in patients}
    for tenant, patient in patients:
        assert stored[patient.pk].startswith(f"s1:{tenant.pk}:phi:")
        _assert_matches_sources(tenant, patient)
    assert _load(alpha, patients[1][1].pk).listing.phone == ""

    # Idempotent: a second run keeps every sealed value as it is and fills only the NULL one.
    _set_raw(patients[0][1].pk, None)
    fill = importlib.import_module("billing.migrations.0005_patient_listing").fill_listing
    from django.apps import apps

    with connection.schema_editor() as editor:
        fill(apps, editor)
    assert _raw(patients[1][1].pk) == stored[patients[1][1].pk]
    assert _raw(patients[2][1].pk) == stored[patients[2][1].pk]
    assert _raw(patients[0][1].pk).startswith(f"s1:{alpha.pk}:phi:")
    _assert_matches_sources(alpha, patients[0][1])
