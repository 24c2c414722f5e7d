"""A rotation worker killed with SIGKILL mid-run loses nothing: restarted, it finishes the job.

The worker is `manage.py rotate_keys`, run in a subprocess against the test
database, re-encrypting real patients (billing.Patient).
"""

from __future__ import annotations

import base64
import datetime
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from billing.models import Patient
from billing.services.statements import patient_create
from portal.models import Tenant
from portal.services import tenant_create
from portal.tenancy.context import tenant_scope
from security.crypto import keyring
from security.crypto.models import DataKey, DataKeyState, KeyRotation, RotationStatus
from security.crypto.providers import LocalKeyProvider, reset_providers, set_provider
from security.crypto.rotation import rows_using
from tests.security.crypto_support import new_master_key

ROOT = Path(__file__).resolve().parents[2]
ROWS = 300
DOB = datetime.date(1961, 8, 4)


@pytest.fixture
def committed_world(transactional_db: None) -> Iterator[tuple[Tenant, bytes]]:
    """A clinic with ROWS committed patients, sealed under a master key the subprocess also gets."""
    master = new_master_key()
    set_provider("local", LocalKeyProvider(master_keys=[master]))
    keyring.forget_all()
    try:
        tenant = tenant_create(slug="killtest", name="Kill Test Clinic")
        with tenant_scope(tenant):
            for n in range(ROWS):
                patient_create(
                    tenant=tenant,
                    account_number=f"K-{n:04d}",
                    first_name=f"Patient {n:04d}",
                    last_name="Killtest",
                    date_of_birth=DOB,
                    phone="+12025550199",
                )
        yield tenant, master
    finally:
        keyring.forget_all()
        reset_providers()


def _worker(master: bytes, *args: str) -> subprocess.Popen[bytes]:
    settings = connection.settings_dict
    url = (
        f"postgres://{settings['USER']}@{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}/{settings['NAME']}"
    )
    env = {
        **os.environ,
        "SETTLE_ENV": "test",
        "DATABASE_URL": url,
        "SETTLE_MASTER_KEY": base64.b64encode(master).decode(),
        "SETTLE_ACTIVE_KEY_CACHE_SECONDS": "0",
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("SETTLE_MASTER_KEY_FILE", None)
    return subprocess.Popen(
        [sys.executable, "manage.py", "rotate_keys", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _rotation_progress(tenant: Tenant) -> int:
    with tenant_scope(tenant):
        rotation = KeyRotation.objects.filter(purpose="phi").first()
        return rotation.rows_done if rotation else 0


@pytest.mark.postgres
def test_rotation_survives_sigkill_and_finishes_on_restart(committed_world: tuple[Tenant, bytes]) -> None:
    tenant, master = committed_world
    args = ["--tenant", tenant.slug, "--batch-size", "20"]
    first = _worker(master, *args, "--pause", "0.05")
    deadline = time.monotonic() + 30
    while _rotation_progress(tenant) < 60:
        assert first.poll() is None, first.stderr.read().decode() if first.stderr else ""
        assert time.monotonic() < deadline, "the worker made no progress"
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert first.returncode == -signal.SIGKILL

    # Killed mid-run: some rows on v2, some still on v1, every one readable.
    done = _rotation_progress(tenant)
    assert 60 <= done < ROWS
    keyring.forget_all()
    with tenant_scope(tenant):
        assert 0 < rows_using(tenant=tenant, purpose="phi", versions=[1]) < ROWS
        assert DataKey.objects.get(purpose="phi", version=1).state == DataKeyState.RETIRING
        assert sorted(p.first_name for p in Patient.objects.all()) == [f"Patient {n:04d}" for n in range(ROWS)]

    second = _worker(master, *args)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err.decode()
    assert "phi data key now version 2" in out.decode()

    keyring.forget_all()
    with tenant_scope(tenant):
        # The same rotation resumed (no third version), and finished.
        phi_rotations = list(KeyRotation.objects.filter(purpose="phi"))
        assert len(phi_rotations) == 1 and phi_rotations[0].status == RotationStatus.FINISHED
        # (This clinic has no processor account, so no secret key to rotate.)
        for purpose in ("phi", "index"):
            assert dict(DataKey.objects.filter(purpose=purpose).values_list("version", "state")) == {
                1: DataKeyState.RETIRED,
                2: DataKeyState.ACTIVE,
            }
            assert rows_using(tenant=tenant, purpose=purpose, versions=[1]) == 0
        rows = list(Patient.objects.order_by("pk"))
        assert [p.first_name for p in rows] == [f"Patient {n:04d}" for n in range(ROWS)]
        assert all(p.date_of_birth == DOB and p.account_number.startswith("K-") for p in rows)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM billing_patient WHERE tenant_id = %s AND (first_name NOT LIKE %s OR phone_index NOT LIKE 'b2:%%')",
            [tenant.pk, f"s1:{tenant.pk}:phi:2:%"],
        )
        assert cursor.fetchone()[0] == 0
