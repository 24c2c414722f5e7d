"""The lean rotation path (security.crypto.bulk / bulk_sql): what it writes is what cipher.open_ reads.

Values re-sealed without model instances must be bound to their own tenant,
model, field and row exactly as cipher.seal binds them; a value copied from
another row or tenant must be refused, never re-sealed into its new place.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import override_settings

from portal.models import Tenant
from portal.tenancy.context import tenant_scope
from security.crypto import bulk, bulk_sql, cipher, keyring
from security.crypto.errors import TamperedCiphertextError, WrongRowError, WrongTenantError
from security.crypto.models import KeyPurpose, KeyRotation
from security.crypto.rotation import data_key_rotation_finish, data_key_rotation_run, data_key_rotation_start
from tests.security import crypto_support
from tests.security.crypto_support import Vault

local_keys_fixture = crypto_support.local_keys_fixture
two_tenants_fixture = crypto_support.two_tenants_fixture
vault_table_fixture = crypto_support.vault_table_fixture

pytestmark = [pytest.mark.usefixtures("local_keys", "vault_table"), pytest.mark.django_db]

DOB = datetime.date(1984, 2, 29)


@pytest.fixture(autouse=True)
def _no_active_version_wait() -> object:
    with override_settings(SETTLE_ACTIVE_KEY_CACHE_SECONDS=0):
        yield


def _vault(tenant: Tenant, name: str, **extra: object) -> Vault:
    with tenant_scope(tenant):
        row = Vault(tenant=tenant, name=name, born=DOB, api_secret="sk_live_x", extra={"n": 1, "s": "é"}, **extra)
        row.save()
        return row


def _raw(row: Vault, column: str) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM crypto_tests_vault WHERE id = %s", [row.pk])  # noqa: S608
        value = cursor.fetchone()[0]
        return None if value is None else str(value)


def _set_raw(row: Vault, column: str, value: str | None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE crypto_tests_vault SET {column} = %s WHERE id = %s", [value, row.pk])  # noqa: S608


def _binding(row: Vault, field_name: str) -> cipher.Binding:
    field: Any = Vault._meta.get_field(field_name)
    return field.binding_for(row)  # type: ignore[no-any-return]


def _reseal_all(tenant: Tenant, purpose: str, version: int) -> bulk.ResealedBatch:
    plan = bulk.table_plan(Vault, purpose)
    with tenant_scope(tenant), transaction.atomic():
        rows = bulk_sql.lock_rows_after(plan, tenant_id=tenant.pk, after_pk=0, limit=100)
        batch = bulk.reseal_rows(plan, rows, tenant_id=tenant.pk, version=version)
        bulk_sql.write_batch(plan, batch, tenant_id=tenant.pk)
    return batch


def test_resealed_values_open_with_open_and_only_in_their_own_row(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, beta = two_tenants
    first, second = _vault(alpha, "Ada Lovelace"), _vault(alpha, "Grace Hopper")
    other_tenant = _vault(beta, "Ada Lovelace")
    data_key_rotation_start(tenant=alpha, purpose=KeyPurpose.PHI)
    batch = _reseal_all(alpha, "phi", 2)
    assert len(batch.records) == 2 and set(batch.columns) == {"name", "born", "extra"}
    with tenant_scope(alpha):
        token = str(_raw(first, "name"))
        assert cipher.parse(token).version == 2
        assert cipher.open_(token, binding=_binding(first, "name"), purpose="phi") == b"Ada Lovelace"
        assert cipher.open_(str(_raw(first, "born")), binding=_binding(first, "born"), purpose="phi") == b"1984-02-29"
        # The same ciphertext in another row, field or tenant is refused.
        with pytest.raises(WrongRowError):
            cipher.open_(token, binding=_binding(second, "name"), purpose="phi")
        with pytest.raises(WrongRowError):
            cipher.open_(token, binding=_binding(first, "born"), purpose="phi")
    with tenant_scope(beta), pytest.raises(WrongTenantError):
        cipher.open_(token, binding=_binding(other_tenant, "name"), purpose="phi")


def test_values_keep_their_exact_plaintext_and_empty_columns_stay_empty(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    row = _vault(alpha, "  Mixed Case  ")
    blank = _vault(alpha, "No Extras")
    _set_raw(blank, "extra", None)
    secret_before = _raw(row, "api_secret")
    data_key_rotation_start(tenant=alpha, purpose=KeyPurpose.PHI)
    _reseal_all(alpha, "phi", 2)
    with tenant_scope(alpha):
        again = Vault.objects.get(pk=row.pk)
        assert (again.name, again.born, again.extra) == ("  Mixed Case  ", DOB, {"n": 1, "s": "é"})
        assert Vault.objects.get(pk=blank.pk).extra is None
    assert _raw(blank, "extra") is None  # NULL stays NULL
    assert _raw(row, "api_secret") == secret_before  # another purpose: untouched


def test_a_ciphertext_copied_from_another_row_is_refused_not_resealed(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    victim, source = _vault(alpha, "Victim"), _vault(alpha, "Source")
    _set_raw(victim, "name", _raw(source, "name"))
    before = _raw(victim, "name")
    data_key_rotation_start(tenant=alpha, purpose=KeyPurpose.PHI)
    with pytest.raises(WrongRowError):
        _reseal_all(alpha, "phi", 2)
    assert _raw(victim, "name") == before


def test_a_ciphertext_of_another_tenant_is_refused(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, beta = two_tenants
    victim = _vault(alpha, "Victim")
    foreign = _vault(beta, "Foreign")
    _set_raw(victim, "name", _raw(foreign, "name"))
    data_key_rotation_start(tenant=alpha, purpose=KeyPurpose.PHI)
    with pytest.raises(WrongTenantError):
        _reseal_all(alpha, "phi", 2)


def test_an_altered_payload_is_refused(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    row = _vault(alpha, "Altered")
    token = str(_raw(row, "name"))
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    _set_raw(row, "name", flipped)
    data_key_rotation_start(tenant=alpha, purpose=KeyPurpose.PHI)
    with pytest.raises(TamperedCiphertextError):
        _reseal_all(alpha, "phi", 2)


def test_index_rotation_computes_what_the_field_computes(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    rows = [_vault(alpha, name) for name in ("Ada Lovelace", "GRACE  hopper", "Émile Zola")]
    rotation = data_key_rotation_start(tenant=alpha, purpose=KeyPurpose.INDEX)
    data_key_rotation_run(rotation=rotation, batch_size=2)
    keyring.forget_all()
    with tenant_scope(alpha):
        for row in rows:
            fresh = Vault.objects.get(pk=row.pk)
            for field_name in ("name_index", "name_born_index"):
                field: Any = Vault._meta.get_field(field_name)
                stored = getattr(fresh, field_name)
                assert stored.startswith("b2:") and stored == field.compute(fresh)
    data_key_rotation_finish(rotation=rotation)


def test_copy_text_refuses_what_it_would_have_to_escape() -> None:
    assert bulk_sql._copy_text([(1, "s1:1:phi:2:abc:def", None)]).getvalue() == "1\ts1:1:phi:2:abc:def\t\\N\n"
    for bad in ("a\tb", "a\nb", "a\\b"):
        with pytest.raises(ValueError, match="COPY"):
            bulk_sql._copy_text([(1, bad)])


def test_a_batch_moved_by_another_runner_is_rolled_back(
    two_tenants: tuple[Tenant, Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    from security.crypto import rotation_run

    alpha, _ = two_tenants
    for n in range(4):
        _vault(alpha, f"Row {n}")
    rotation = data_key_rotation_start(tenant=alpha, purpose=KeyPurpose.PHI)
    with tenant_scope(alpha):
        (part,) = rotation_run.model_slices(rotation_pk=rotation.pk, model=Vault, tenant_id=alpha.pk, workers=1)
        names_before = {row.pk: _raw(row, "name") for row in Vault.objects.all()}
        original = bulk.reseal_rows

        def another_runner_meanwhile(*args: object, **kwargs: object) -> bulk.ResealedBatch:
            # While this batch works, the slice's cursor moves (another runner did this batch).
            KeyRotation.objects.filter(pk=rotation.pk).update(progress={part.key: 99})
            return original(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(bulk, "reseal_rows", another_runner_meanwhile)
        outcome = rotation_run._slice_batch(part, rotation_pk=rotation.pk, model=Vault, batch_size=10, slice_count=1)
        assert outcome is None
        # Nothing of the batch was kept: the rows are as they were.
        assert {row.pk: _raw(row, "name") for row in Vault.objects.all()} == names_before
