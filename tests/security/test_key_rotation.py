"""Key rotation: new versions, batched re-encryption that resumes and repeats safely, retirement, rewrap."""

from __future__ import annotations

import datetime
import io

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from audit.models import AuditEvent
from portal.models import Tenant
from portal.tenancy.context import tenant_scope
from security.crypto import cipher, keyring
from security.crypto import rotation as rotation_module
from security.crypto.fields import blind_index_filter
from security.crypto.models import DataKey, DataKeyState, KeyPurpose, KeyRotation, RotationStatus
from security.crypto.providers import LocalKeyProvider, set_provider
from security.crypto.rotation import (
    RotationNotReady,
    data_key_rotate,
    data_key_rotation_finish,
    data_key_rotation_run,
    data_key_rotation_start,
    data_keys_rewrap,
    rows_using,
)
from security.tasks import data_key_rotate_task
from tests.security import crypto_support
from tests.security.crypto_support import Vault, new_master_key

# Fixtures shared by the crypto tests (requested by name: local_keys, two_tenants, vault_table).
local_keys_fixture = crypto_support.local_keys_fixture
two_tenants_fixture = crypto_support.two_tenants_fixture
vault_table_fixture = crypto_support.vault_table_fixture

pytestmark = [
    pytest.mark.usefixtures("local_keys", "vault_table"),
    pytest.mark.django_db,
]

DOB = datetime.date(1970, 5, 17)


@pytest.fixture(autouse=True)
def _no_active_version_wait() -> object:
    # One process: nobody else can hold the old active version.
    with override_settings(SETTLE_ACTIVE_KEY_CACHE_SECONDS=0):
        yield


def _seed(tenant: Tenant, count: int) -> list[int]:
    with tenant_scope(tenant):
        rows = []
        for n in range(count):
            row = Vault(tenant=tenant, name=f"Patient {n:03d}", born=DOB, api_secret=f"sk_{n}", extra={"n": n})
            row.save()
            rows.append(row.pk)
    return rows


def _raw_versions(column: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM crypto_tests_vault")
        return {
            (value or "").split(":")[3] if (value or "").startswith("s1:") else (value or "")[:2]
            for (value,) in cursor.fetchall()
        }


def _all_decrypt(tenant: Tenant) -> list[str]:
    with tenant_scope(tenant):
        return sorted(v.name for v in Vault.objects.all() if v.born == DOB and v.api_secret.startswith("sk_"))


def test_rotation_reencrypts_every_row_and_retires_the_old_key(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, beta = two_tenants
    _seed(alpha, 7)
    _seed(beta, 2)
    before_beta = _all_decrypt(beta)
    rotation = data_key_rotate(tenant=alpha, purpose=KeyPurpose.PHI, batch_size=3)
    assert rotation.status == RotationStatus.FINISHED and rotation.to_version == 2 and rotation.percent == 100
    with tenant_scope(alpha):
        states = dict(DataKey.objects.filter(purpose="phi").values_list("version", "state"))
        assert states == {1: DataKeyState.RETIRED, 2: DataKeyState.ACTIVE}
        assert rows_using(tenant=alpha, purpose="phi", versions=[1]) == 0
    assert len(_all_decrypt(alpha)) == 7
    # The secret-purpose column was not part of this rotation; beta was not touched.
    with tenant_scope(alpha):
        assert rows_using(tenant=alpha, purpose="secret", versions=[1]) == 7
    assert _all_decrypt(beta) == before_beta
    with tenant_scope(beta):
        assert DataKey.objects.get(purpose="phi").state == DataKeyState.ACTIVE
    events = list(
        AuditEvent.objects.filter(action__startswith="key.rotation").order_by("id").values_list("action", "tenant_id")
    )
    assert events == [("key.rotation_started", alpha.pk), ("key.rotation_completed", alpha.pk)]


def test_a_crashed_run_resumes_after_its_last_committed_batch(
    two_tenants: tuple[Tenant, Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, _ = two_tenants
    _seed(alpha, 10)
    rotation = data_key_rotation_start(tenant=alpha, purpose=KeyPurpose.PHI)

    class Crash(Exception):
        pass

    def crash_after_two_batches(current: KeyRotation, report: object) -> None:
        if current.rows_done >= 6:
            raise Crash

    with pytest.raises(Crash):
        data_key_rotation_run(rotation=rotation, batch_size=3, on_progress=crash_after_two_batches)
    rotation.refresh_from_db()
    assert rotation.rows_done == 6 and rotation.progress["crypto_tests.Vault"] > 0
    with tenant_scope(alpha):
        assert rows_using(tenant=alpha, purpose="phi", versions=[1]) == 4
        # Half-rotated: every row still decrypts, and look-ups find rows under either index key.
        assert len(_all_decrypt(alpha)) == 10
    # Not done: with the sweep for stragglers disabled, retirement is refused.
    monkeypatch.setattr(rotation_module, "_reseal_locked_rows", lambda plan, rows, **kwargs: 0)
    with pytest.raises(RotationNotReady, match="4 rows still use"):
        data_key_rotation_finish(rotation=rotation)
    monkeypatch.undo()
    with tenant_scope(alpha):
        assert DataKey.objects.get(purpose="phi", version=1).state == DataKeyState.RETIRING
    # Starting again resumes the running rotation rather than making v3.
    again = data_key_rotation_start(tenant=alpha, purpose=KeyPurpose.PHI)
    assert again.pk == rotation.pk
    finished = data_key_rotate(tenant=alpha, purpose=KeyPurpose.PHI, batch_size=3)
    assert finished.pk == rotation.pk and finished.status == RotationStatus.FINISHED
    assert _raw_versions("name") == {"2"}
    assert len(_all_decrypt(alpha)) == 10


def test_running_a_finished_batch_again_changes_nothing(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    _seed(alpha, 4)
    rotation = data_key_rotation_start(tenant=alpha, purpose=KeyPurpose.PHI)
    data_key_rotation_run(rotation=rotation, batch_size=10)
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, name FROM crypto_tests_vault ORDER BY id")
        after_first = cursor.fetchall()
    # Forget the progress: the walk starts over, finds everything on v2, rewrites nothing.
    with tenant_scope(alpha):
        KeyRotation.objects.filter(pk=rotation.pk).update(progress={})
    rotation.refresh_from_db()
    reports: list[int] = []
    data_key_rotation_run(
        rotation=rotation, batch_size=10, on_progress=lambda r, rep: reports.append(rep.rows_rewritten)
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, name FROM crypto_tests_vault ORDER BY id")
        assert cursor.fetchall() == after_first
    assert reports and set(reports) == {0}  # one batch per model, nothing rewritten


def test_rows_written_with_the_old_key_during_rotation_are_caught_before_retiring(
    two_tenants: tuple[Tenant, Tenant],
) -> None:
    alpha, _ = two_tenants
    _seed(alpha, 3)
    rotation = data_key_rotation_start(tenant=alpha, purpose=KeyPurpose.PHI)
    data_key_rotation_run(rotation=rotation, batch_size=10)
    # A slow web process that still believed v1 was active writes a row after the walk passed it.
    with tenant_scope(alpha):
        late = Vault(tenant=alpha, name="Late Writer", born=DOB, api_secret="sk_late")
        late.save()
        old_key = keyring.decryption_key(tenant_id=alpha.pk, purpose="phi", version=1)
        field = Vault._meta.get_field("name")
        token = cipher.seal_with(b"Late Writer", binding=field.binding_for(late), purpose="phi", version=1, key=old_key)
        with connection.cursor() as cursor:
            cursor.execute("UPDATE crypto_tests_vault SET name = %s WHERE id = %s", [token, late.pk])
        assert rows_using(tenant=alpha, purpose="phi", versions=[1]) == 1
    finished = data_key_rotation_finish(rotation=rotation)
    assert finished.status == RotationStatus.FINISHED
    with tenant_scope(alpha):
        assert rows_using(tenant=alpha, purpose="phi", versions=[1]) == 0
        assert Vault.objects.get(pk=late.pk).name == "Late Writer"


def test_finish_waits_until_every_process_can_have_seen_the_new_key(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    _seed(alpha, 1)
    rotation = data_key_rotation_start(tenant=alpha, purpose=KeyPurpose.PHI)
    data_key_rotation_run(rotation=rotation)
    with override_settings(SETTLE_ACTIVE_KEY_CACHE_SECONDS=30), pytest.raises(RotationNotReady) as excinfo:
        data_key_rotation_finish(rotation=rotation)
    assert 0 < excinfo.value.retry_after <= 30
    with tenant_scope(alpha):
        assert DataKey.objects.get(purpose="phi", version=1).state == DataKeyState.RETIRING


def test_index_rotation_keeps_lookups_working_throughout(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    _seed(alpha, 5)

    def find(name: str) -> int:
        with tenant_scope(alpha):
            match = blind_index_filter(
                tenant_id=alpha.pk, model=Vault, field_name="name_born_index", values=[name, "05/17/1970"]
            )
            return Vault.objects.filter(match).count()

    rotation = data_key_rotation_start(tenant=alpha, purpose=KeyPurpose.INDEX)
    data_key_rotation_run(rotation=rotation, batch_size=2, on_progress=lambda r, rep: None)
    assert find("patient 004") == 1
    data_key_rotation_finish(rotation=rotation)
    assert _raw_versions("name_index") == {"b2"}
    assert find("PATIENT 000") == 1 and find("Patient 003") == 1


def test_rotate_keys_command_shows_progress_and_rotates_every_purpose(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    _seed(alpha, 6)
    out, err = io.StringIO(), io.StringIO()
    call_command("rotate_keys", tenant=alpha.slug, batch_size=2, stdout=out, stderr=err)
    assert "100%" in err.getvalue() and "[" in err.getvalue()
    assert "phi data key now version 2" in out.getvalue() and "index data key now version 2" in out.getvalue()
    with tenant_scope(alpha):
        assert set(DataKey.objects.filter(state="active").values_list("purpose", "version")) == {
            ("phi", 2),
            ("secret", 2),
            ("index", 2),
        }
        for purpose in ("phi", "secret", "index"):
            assert rows_using(tenant=alpha, purpose=purpose, versions=[1]) == 0
    assert len(_all_decrypt(alpha)) == 6


def test_rotate_keys_command_refuses_an_unknown_clinic() -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no clinic"):
        call_command("rotate_keys", tenant="nowhere", stdout=io.StringIO(), stderr=io.StringIO())


def test_celery_task_rotates(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    _seed(alpha, 3)
    result = data_key_rotate_task.delay(alpha.pk, "secret").get()
    assert result["status"] == "finished" and result["rows_done"] == 3
    with tenant_scope(alpha):
        assert rows_using(tenant=alpha, purpose="secret", versions=[1]) == 0


def test_rewrap_moves_keys_to_a_new_master_key_without_touching_rows(
    two_tenants: tuple[Tenant, Tenant], local_keys: LocalKeyProvider
) -> None:
    alpha, beta = two_tenants
    _seed(alpha, 2)
    _seed(beta, 1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM crypto_tests_vault ORDER BY id")
        rows_before = cursor.fetchall()
    old = local_keys.master_keys[0]
    new = new_master_key()
    set_provider("local", LocalKeyProvider(master_keys=[new, old]))
    keyring.forget_all()
    assert data_keys_rewrap() == 6  # 3 purposes x 2 tenants
    assert data_keys_rewrap() == 0  # already under the new key
    # The old master key is gone: everything still decrypts.
    set_provider("local", LocalKeyProvider(master_keys=[new]))
    keyring.forget_all()
    assert len(_all_decrypt(alpha)) == 2 and len(_all_decrypt(beta)) == 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM crypto_tests_vault ORDER BY id")
        assert cursor.fetchall() == rows_before
    assert AuditEvent.objects.filter(action="key.rewrapped").count() == 2


def test_rewrap_keys_command(two_tenants: tuple[Tenant, Tenant], local_keys: LocalKeyProvider) -> None:
    alpha, _ = two_tenants
    _seed(alpha, 1)
    set_provider("local", LocalKeyProvider(master_keys=[new_master_key(), local_keys.master_keys[0]]))
    out = io.StringIO()
    call_command("rewrap_keys", tenant=alpha.slug, stdout=out)
    assert out.getvalue().startswith("3 data keys re-wrapped under local:")
