"""The in-memory data key cache: at most 5 minutes, bounded uses, per tenant, never shown."""

from __future__ import annotations

import logging

import pytest
import time_machine
from django.test import override_settings

from portal.models import Tenant
from portal.tenancy.context import tenant_scope
from security.crypto import keyring
from security.crypto.keyring import DataKeyCache, _KeyMaterial
from security.crypto.models import KeyPurpose
from tests.security import crypto_support
from tests.security.crypto_support import Vault

# Fixtures shared by the crypto tests (requested by name: local_keys, two_tenants, vault_table).
local_keys_fixture = crypto_support.local_keys_fixture
two_tenants_fixture = crypto_support.two_tenants_fixture
vault_table_fixture = crypto_support.vault_table_fixture

KEY_A = b"A" * 32
KEY_B = b"B" * 32


def test_entries_expire_after_five_minutes() -> None:
    with time_machine.travel(1_800_000_000, tick=False) as traveller:
        cache = DataKeyCache()
        cache.put(tenant_id=1, purpose="phi", version=1, key=KEY_A)
        traveller.shift(299)
        assert cache.get(tenant_id=1, purpose="phi", version=1) == KEY_A
        traveller.shift(1)
        assert cache.get(tenant_id=1, purpose="phi", version=1) is None
        assert len(cache) == 0


def test_max_age_is_capped_at_five_minutes_whatever_is_configured() -> None:
    with time_machine.travel(1_800_000_000, tick=False) as traveller:
        cache = DataKeyCache(max_age_seconds=3600)
        assert cache.max_age_seconds == 300
        cache.put(tenant_id=1, purpose="phi", version=1, key=KEY_A)
        traveller.shift(301)
        assert cache.get(tenant_id=1, purpose="phi", version=1) is None


def test_clock_going_backwards_expires_the_entry() -> None:
    with time_machine.travel(1_800_000_000, tick=False) as traveller:
        cache = DataKeyCache()
        cache.put(tenant_id=1, purpose="phi", version=1, key=KEY_A)
        traveller.shift(-10)
        assert cache.get(tenant_id=1, purpose="phi", version=1) is None


def test_entries_expire_after_their_use_count() -> None:
    cache = DataKeyCache(max_uses=3)
    cache.put(tenant_id=1, purpose="phi", version=1, key=KEY_A)
    assert [cache.get(tenant_id=1, purpose="phi", version=1) for _ in range(4)] == [KEY_A, KEY_A, KEY_A, None]


def test_entries_are_per_tenant() -> None:
    cache = DataKeyCache()
    cache.put(tenant_id=1, purpose="phi", version=1, key=KEY_A)
    cache.put(tenant_id=2, purpose="phi", version=1, key=KEY_B)
    assert cache.get(tenant_id=1, purpose="phi", version=1) == KEY_A
    assert cache.get(tenant_id=2, purpose="phi", version=1) == KEY_B
    assert cache.get(tenant_id=3, purpose="phi", version=1) is None
    cache.forget_tenant(1)
    assert cache.get(tenant_id=1, purpose="phi", version=1) is None
    assert cache.get(tenant_id=2, purpose="phi", version=1) == KEY_B


def test_key_material_never_shows_in_repr_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    material = _KeyMaterial(KEY_A)
    cache = DataKeyCache()
    cache.put(tenant_id=1, purpose="phi", version=1, key=KEY_A)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("settle.test").info("state %r %s %r", material, material, cache)
    assert "AAAA" not in caplog.text and "redacted" in caplog.text
    material.wipe()
    assert material.bytes() == bytes(32)


@pytest.mark.usefixtures("local_keys", "vault_table")
def test_keyring_unwraps_again_after_expiry(
    two_tenants: tuple[Tenant, Tenant], django_capture_on_commit_callbacks: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, _ = two_tenants
    calls: list[str] = []
    original = keyring._unwrap

    def counting_unwrap(row: object) -> bytes:
        calls.append("unwrap")
        return original(row)  # type: ignore[arg-type]

    monkeypatch.setattr(keyring, "_unwrap", counting_unwrap)
    monkeypatch.setattr(keyring, "key_cache", DataKeyCache(max_age_seconds=300))
    with time_machine.travel(1_800_000_000, tick=False) as traveller, tenant_scope(alpha):
        # Keys created inside a transaction are cached only when it commits.
        with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
            row = Vault(tenant=alpha, name="Cached Patient")
            row.save()
        # (A second field of the same purpose in that first transaction
        # unwraps again: keys are not cached before their creation commits.)
        calls.clear()
        for _ in range(3):
            assert Vault.objects.get(pk=row.pk).name == "Cached Patient"
        assert calls == []  # served from the cache
        traveller.shift(301)
        assert Vault.objects.get(pk=row.pk).name == "Cached Patient"
        assert calls == ["unwrap"]


@pytest.mark.usefixtures("local_keys", "vault_table")
def test_a_key_from_a_rolled_back_transaction_is_never_cached(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    with tenant_scope(alpha):
        # No commit happens inside the test transaction: nothing may be cached.
        Vault(tenant=alpha, name="Uncommitted").save()
        assert len(keyring.key_cache) == 0
        assert keyring._active_versions == {}


@pytest.mark.usefixtures("local_keys")
@override_settings(SETTLE_ACTIVE_KEY_CACHE_SECONDS=0)
def test_encryption_key_is_created_once_per_tenant_and_purpose(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, beta = two_tenants
    with tenant_scope(alpha):
        v1, k1 = keyring.encryption_key(tenant_id=alpha.pk, purpose=KeyPurpose.PHI)
        v2, k2 = keyring.encryption_key(tenant_id=alpha.pk, purpose=KeyPurpose.PHI)
        assert (v1, k1) == (v2, k2) == (1, k1)
        _, secret_key = keyring.encryption_key(tenant_id=alpha.pk, purpose=KeyPurpose.SECRET)
        assert secret_key != k1
    with tenant_scope(beta):
        _, other = keyring.encryption_key(tenant_id=beta.pk, purpose=KeyPurpose.PHI)
        assert other != k1


@pytest.mark.usefixtures("local_keys", "vault_table")
def test_a_key_created_in_a_rolled_back_savepoint_is_never_used_again(two_tenants: tuple[Tenant, Tenant]) -> None:
    from django.db import transaction

    from security.crypto.models import DataKey

    alpha, _ = two_tenants
    with tenant_scope(alpha):
        with pytest.raises(RuntimeError), transaction.atomic():
            Vault(tenant=alpha, name="Rolled Back").save()
            raise RuntimeError
        assert not DataKey.objects.exists()
        # The next write must not seal with the vanished key: it creates a real one.
        row = Vault(tenant=alpha, name="Kept")
        row.save()
        assert DataKey.objects.filter(purpose="phi").count() == 1
        keyring.forget_all()  # read back through the stored, wrapped key only
        assert Vault.objects.get(pk=row.pk).name == "Kept"


def test_uses_are_counted_exactly_without_the_lock_under_threads() -> None:
    # Readers take no lock; the count must still lose no use: exactly
    # max_uses look-ups succeed however the threads interleave.
    import threading

    cache = DataKeyCache(max_uses=1_000)
    cache.put(tenant_id=1, purpose="phi", version=1, key=KEY_A)
    served: list[int] = []
    start = threading.Barrier(8)

    def reader() -> None:
        start.wait()
        hits = sum(cache.fresh_aead(1, "phi", 1) is not None for _ in range(400))
        served.append(hits)

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(served) == 1_000
    assert cache.get(tenant_id=1, purpose="phi", version=1) is None


def test_a_reader_holding_a_forgotten_tenants_entries_gets_nothing() -> None:
    # A reader that fetched the tenant's entries just before forget_tenant
    # must not be served from them afterwards (the entry is retired, not only unlisted).
    cache = DataKeyCache()
    cache.put(tenant_id=1, purpose="phi", version=1, key=KEY_A)
    entries_seen_before = cache._by_tenant[1]
    cache.forget_tenant(1)
    cache._by_tenant[1] = entries_seen_before  # the stale view that reader still holds
    assert cache.get(tenant_id=1, purpose="phi", version=1) is None
    assert cache.fresh_aead(1, "phi", 1) is None


def test_a_key_nobody_asks_for_is_wiped_at_the_next_put() -> None:
    with time_machine.travel(1_800_000_000, tick=False) as traveller:
        cache = DataKeyCache()
        cache.put(tenant_id=1, purpose="phi", version=1, key=KEY_A)
        idle = cache._by_tenant[1][("phi", 1)]
        traveller.shift(300)
        cache.put(tenant_id=2, purpose="phi", version=1, key=KEY_B)
        assert len(cache) == 1
        assert idle.material.bytes() == bytes(32)
        assert cache.get(tenant_id=2, purpose="phi", version=1) == KEY_B


@pytest.mark.usefixtures("local_keys", "vault_table")
def test_a_pending_first_key_is_used_in_its_transaction_and_forgotten_after(two_tenants: tuple[Tenant, Tenant]) -> None:
    from django.db import transaction

    alpha, _ = two_tenants
    with tenant_scope(alpha):
        with transaction.atomic():
            version, key = keyring.encryption_key(tenant_id=alpha.pk, purpose=KeyPurpose.PHI)
            # Not cached (not committed), but this transaction finds it without unwrapping.
            assert len(keyring.key_cache) == 0
            assert (alpha.pk, KeyPurpose.PHI) in keyring._pending_holders
            assert keyring._pending(alpha.pk, KeyPurpose.PHI, None) == (version, key)
        # The block that created it has ended: the next look-up drops it, and
        # from then on look-ups skip the connection entirely.
        assert keyring._pending(alpha.pk, KeyPurpose.PHI, None) is None
        assert keyring._pending_holders == {}


@pytest.mark.usefixtures("local_keys")
def test_a_pending_key_older_than_the_cache_bound_is_never_used(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    with time_machine.travel(1_800_000_000, tick=False) as traveller, tenant_scope(alpha):
        version, key = keyring.encryption_key(tenant_id=alpha.pk, purpose=KeyPurpose.PHI)
        assert keyring._pending(alpha.pk, KeyPurpose.PHI, None) == (version, key)
        traveller.shift(300)
        assert keyring._pending(alpha.pk, KeyPurpose.PHI, None) is None
        assert keyring._pending_holders == {}
