"""Concurrent writers (threads, separate connections) leave one valid chain."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from audit.models import AuditChain, AuditEvent
from audit.recorder import audit_record
from audit.services.integrity import chain_verify
from portal.models import Tenant

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 8
PER_THREAD = 15


def test_concurrent_writers_leave_one_gapless_chain_per_tenant():
    from portal.services import tenant_create

    tenants = [tenant_create(slug="conc-a", name="A"), tenant_create(slug="conc-b", name="B")]
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def write(index: int) -> None:
        try:
            tenant = Tenant.objects.get(pk=tenants[index % 2].pk)
            barrier.wait(timeout=10)
            for n in range(PER_THREAD):
                with transaction.atomic():
                    audit_record(
                        action="receipt.viewed", tenant=tenant, target_type="receipt", target_id=f"{index}-{n}"
                    )
                    if n % 5 == 4:
                        # Some acts roll back: their events must leave no gap.
                        transaction.set_rollback(True)
            # The platform chain has writers from every thread too.
            with transaction.atomic():
                audit_record(action="auth.login_failed", tenant=None, outcome="failure")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    kept = PER_THREAD - PER_THREAD // 5
    for tenant in tenants:
        chain = AuditChain.objects.get(tenant=tenant)
        rows = list(AuditEvent.objects.filter(chain=chain).order_by("sequence").values_list("sequence", "occurred_at"))
        assert [sequence for sequence, _ in rows] == list(range(1, kept * THREADS // 2 + 1))
        # Writers read the clock before they queue for the lock; time order still follows sequence order.
        times = [occurred_at for _, occurred_at in rows]
        assert times == sorted(times)
        assert chain_verify(chain=chain).ok
    platform = AuditChain.objects.get(key="platform")
    assert platform.last_sequence == THREADS
    assert chain_verify(chain=platform).ok
