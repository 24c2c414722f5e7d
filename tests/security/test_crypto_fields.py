"""Encrypted fields: round trips, what the column holds, and every way a ciphertext can be wrong."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.db import connection, transaction

from portal.models import Tenant
from portal.tenancy.context import tenant_scope
from security.crypto import cipher
from security.crypto.errors import (
    EncryptedFieldUsageError,
    MalformedCiphertextError,
    TamperedCiphertextError,
    UnknownDataKeyError,
    WrongRowError,
    WrongTenantError,
)
from security.crypto.fields import Sealed
from security.crypto.models import DataKey, KeyPurpose
from tests.security import crypto_support
from tests.security.crypto_support import Vault

# Fixtures shared by the crypto tests (requested by name: local_keys, two_tenants, vault_table).
local_keys_fixture = crypto_support.local_keys_fixture
two_tenants_fixture = crypto_support.two_tenants_fixture
vault_table_fixture = crypto_support.vault_table_fixture

pytestmark = pytest.mark.usefixtures("local_keys", "vault_table")

DOB = datetime.date(1984, 2, 29)


def _raw(column: str, pk: int) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM crypto_tests_vault WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def _set_raw(column: str, pk: int, value: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE crypto_tests_vault SET {column} = %s WHERE id = %s", [value, pk])


def _vault(tenant: Tenant, **values: object) -> Vault:
    with tenant_scope(tenant):
        row = Vault(tenant=tenant, **{"name": "Rosa Exampleton", "born": DOB, **values})
        row.save()
    return row


def _load(tenant: Tenant, pk: int) -> Vault:
    with tenant_scope(tenant):
        return Vault.objects.get(pk=pk)


def test_round_trip_of_text_date_json_and_secret(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    row = _vault(alpha, extra={"allergies": ["penicillin"], "n": 3}, api_secret="sk_live_abc")
    loaded = _load(alpha, row.pk)
    with tenant_scope(alpha):
        assert loaded.name == "Rosa Exampleton"
        assert loaded.born == DOB
        assert loaded.extra == {"allergies": ["penicillin"], "n": 3}
        assert loaded.api_secret == "sk_live_abc"
    # The column holds ciphertext naming tenant, purpose and key version; no plaintext.
    stored = _raw("name", row.pk)
    assert stored.startswith(f"s1:{alpha.pk}:phi:1:")
    assert "Rosa" not in stored and "1984" not in _raw("born", row.pk)
    assert _raw("api_secret", row.pk).startswith(f"s1:{alpha.pk}:secret:1:")
    assert "penicillin" not in _raw("extra", row.pk)


def test_null_stays_null_and_empty_string_is_encrypted(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    row = _vault(alpha, born=None, extra=None, api_secret="")
    assert _raw("born", row.pk) is None
    assert _raw("api_secret", row.pk).startswith("s1:")
    with tenant_scope(alpha):
        loaded = Vault.objects.get(pk=row.pk)
        assert loaded.born is None and loaded.extra is None and loaded.api_secret == ""


def test_values_stay_sealed_until_read(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    row = _vault(alpha)
    loaded = _load(alpha, row.pk)
    assert isinstance(loaded.__dict__["name"], Sealed)
    assert repr(loaded.__dict__["name"]) == "<sealed>"
    with tenant_scope(alpha):
        assert loaded.name == "Rosa Exampleton"
    assert loaded.__dict__["name"] == "Rosa Exampleton"


def test_each_save_uses_a_fresh_nonce(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    first = _vault(alpha)
    second = _vault(alpha)
    assert _raw("name", first.pk) != _raw("name", second.pk)
    before = _raw("name", first.pk)
    with tenant_scope(alpha):
        first.save()
    assert _raw("name", first.pk) != before


def test_ciphertext_copied_to_another_row_fails(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    victim = _vault(alpha, name="Victim Name")
    attacker = _vault(alpha, name="Attacker Name")
    _set_raw("name", attacker.pk, _raw("name", victim.pk))
    loaded = _load(alpha, attacker.pk)
    with tenant_scope(alpha), pytest.raises(WrongRowError, match="another row or field"):
        _ = loaded.name


def test_ciphertext_copied_to_another_field_fails(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    row = _vault(alpha, api_secret="sk_live_x")
    _set_raw("api_secret", row.pk, _raw("name", row.pk))
    loaded = _load(alpha, row.pk)
    with tenant_scope(alpha), pytest.raises(WrongRowError):
        _ = loaded.api_secret


def test_ciphertext_copied_to_another_tenant_fails(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, beta = two_tenants
    source = _vault(alpha, name="Alpha Patient")
    target = _vault(beta, name="Beta Patient")
    _set_raw("name", target.pk, _raw("name", source.pk))
    loaded = _load(beta, target.pk)
    with tenant_scope(beta), pytest.raises(WrongTenantError):
        _ = loaded.name


def test_ciphertext_relabelled_as_the_other_tenant_still_fails(two_tenants: tuple[Tenant, Tenant]) -> None:
    # Rewriting the header to name the victim tenant does not help: the
    # binding, the key and the associated data are all the other tenant's.
    alpha, beta = two_tenants
    source = _vault(alpha, name="Alpha Patient")
    target = _vault(beta, name="Beta Patient")
    forged = _raw("name", source.pk).replace(f"s1:{alpha.pk}:", f"s1:{beta.pk}:", 1)
    _set_raw("name", target.pk, forged)
    loaded = _load(beta, target.pk)
    with tenant_scope(beta), pytest.raises((WrongRowError, TamperedCiphertextError)):
        _ = loaded.name


@pytest.mark.parametrize("position", [0, 5, 17, -1])
def test_flipped_byte_in_payload_fails(two_tenants: tuple[Tenant, Tenant], position: int) -> None:
    alpha, _ = two_tenants
    row = _vault(alpha)
    token = _raw("name", row.pk)
    header, payload = token.rsplit(":", 1)
    raw = bytearray(cipher._b64decode(payload))
    raw[position] ^= 0x01
    _set_raw("name", row.pk, f"{header}:{cipher._b64encode(bytes(raw))}")
    loaded = _load(alpha, row.pk)
    with tenant_scope(alpha), pytest.raises(TamperedCiphertextError, match="failed authentication"):
        _ = loaded.name


def test_changed_key_version_in_header_fails(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    row = _vault(alpha)
    _set_raw("name", row.pk, _raw("name", row.pk).replace(":phi:1:", ":phi:7:", 1))
    loaded = _load(alpha, row.pk)
    with tenant_scope(alpha), pytest.raises(UnknownDataKeyError):
        _ = loaded.name


@pytest.mark.parametrize("garbage", ["Rosa Exampleton", "s1:1:phi:1:abc", "", "s1:x:phi:1:aaaaaaaaaaaa:zz"])
def test_plaintext_or_garbage_in_the_column_is_refused(two_tenants: tuple[Tenant, Tenant], garbage: str) -> None:
    alpha, _ = two_tenants
    row = _vault(alpha)
    _set_raw("name", row.pk, garbage)
    loaded = _load(alpha, row.pk)
    with tenant_scope(alpha), pytest.raises(MalformedCiphertextError):
        _ = loaded.name


def test_truncated_payload_is_tampering(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    row = _vault(alpha)
    _set_raw("name", row.pk, _raw("name", row.pk)[:-30])
    loaded = _load(alpha, row.pk)
    with tenant_scope(alpha), pytest.raises(TamperedCiphertextError):
        _ = loaded.name


def test_filtering_on_an_encrypted_field_is_refused(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    _vault(alpha)
    with tenant_scope(alpha):
        with pytest.raises(EncryptedFieldUsageError, match="blind index"):
            Vault.objects.filter(name="Rosa Exampleton").count()
        with pytest.raises(EncryptedFieldUsageError):
            Vault.objects.filter(name__icontains="rosa").count()
        assert Vault.objects.filter(born__isnull=False).count() == 1


def test_queryset_update_of_an_encrypted_field_is_refused(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    row = _vault(alpha)
    with tenant_scope(alpha):
        with pytest.raises(EncryptedFieldUsageError, match="save"), transaction.atomic():
            Vault.objects.filter(pk=row.pk).update(name="Plain Text")
        row.name = "Changed"
        with pytest.raises(EncryptedFieldUsageError), transaction.atomic():
            Vault.objects.bulk_update([row], ["name"])
    assert "Plain" not in _raw("name", row.pk) and "Changed" not in _raw("name", row.pk)


def test_data_keys_are_per_tenant_and_purpose_and_stored_wrapped(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, beta = two_tenants
    _vault(alpha, api_secret="sk_a")
    _vault(beta, api_secret="sk_b")
    with tenant_scope(alpha):
        alpha_keys = {(k.purpose, k.version): k for k in DataKey.objects.all()}
    assert set(alpha_keys) == {("phi", 1), ("secret", 1), ("index", 1)}
    for key in alpha_keys.values():
        assert len(bytes(key.wrapped_key)) > 32  # wrapped, never the bare 32 bytes
        assert key.provider == "local" and key.wrapping_key_id.startswith("local:")
    with tenant_scope(beta):
        assert DataKey.objects.count() == 3  # the scoped manager shows only beta's
    # Fields declare their purpose; the phi field never uses the secret key.
    assert Vault._meta.get_field("api_secret").purpose == KeyPurpose.SECRET


def test_dumpdata_style_serialisation_writes_ciphertext(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    row = _vault(alpha)
    loaded = _load(alpha, row.pk)
    with tenant_scope(alpha):
        text = Vault._meta.get_field("name").value_to_string(loaded)
    assert text.startswith("s1:") and "Rosa" not in text


def test_expressions_cannot_write_plaintext_into_an_encrypted_field(two_tenants: tuple[Tenant, Tenant]) -> None:
    from django.db.models import Value

    alpha, _ = two_tenants
    row = _vault(alpha)
    with tenant_scope(alpha):
        with pytest.raises(EncryptedFieldUsageError), transaction.atomic():
            Vault.objects.filter(pk=row.pk).update(name=Value("Plain Text"))
    assert "Plain" not in _raw("name", row.pk)
