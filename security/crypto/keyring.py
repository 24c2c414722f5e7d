"""Data keys in memory: which version is active, and the plaintext keys.

The keyring is the only place a plaintext data key lives. It is

- bounded: a key leaves the cache after SETTLE_DATA_KEY_CACHE_SECONDS (at most
  300, whatever the setting says) or SETTLE_DATA_KEY_CACHE_MAX_USES uses,
  whichever comes first, and is unwrapped again on next use;
- per tenant: entries are filed under the tenant id, looked up only with it,
  and a tenant's entries can be dropped on their own (incident response);
- never logged: key material sits in _KeyMaterial, whose repr is redacted.

A data key created inside a transaction is not cached until that transaction
commits: if it rolled back, a cached key would name a version that does not
exist, and values sealed with it could never be opened.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.signals import setting_changed
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, transaction
from django.dispatch import receiver

from security.crypto.errors import KeyUnavailableError, UnknownDataKeyError
from security.crypto.models import DataKey, DataKeyState, KeyPurpose
from security.crypto.providers import get_provider

MAX_CACHE_SECONDS = 300  # SECURITY.md: data keys cached in memory at most 5 minutes
DEFAULT_MAX_USES = 100_000
DEFAULT_ACTIVE_VERSION_SECONDS = 30


def encryption_context(*, tenant_id: int, purpose: str, version: int) -> dict[str, str]:
    """The KMS encryption context of one data key: names tenant, purpose and version."""
    return {"settle:tenant": str(tenant_id), "settle:purpose": str(purpose), "settle:version": str(version)}


class _KeyMaterial:
    """32 bytes of plaintext key. Redacted in every repr and str."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = bytearray(value)

    def bytes(self) -> bytes:
        return bytes(self._value)

    def wipe(self) -> None:
        # Best effort: Python may hold other copies, but not through us.
        for index in range(len(self._value)):
            self._value[index] = 0

    def __repr__(self) -> str:
        return "<data key redacted>"

    __str__ = __repr__


@dataclass
class _Entry:
    material: _KeyMaterial
    # The cipher object for the key, built once: constructing one costs as much
    # as a decryption. It holds the key too, so it lives and dies with the entry.
    aead: AESGCM
    loaded_at: float
    # loaded_at + the cache's max age; set to 0 when the entry is dropped, so a
    # reader that fetched it just before can no longer use it.
    expires_at: float
    # Uses handed out so far. next() on an itertools.count is a single C call,
    # atomic under the GIL, so readers count without the lock and no use is lost.
    uses: Iterator[int] = field(default_factory=itertools.count)

    def retire(self) -> None:
        self.expires_at = 0.0
        self.material.wipe()

    def __repr__(self) -> str:
        return "<cached data key>"


class DataKeyCache:
    """Plaintext data keys by tenant, then (purpose, version). Thread-safe.

    Reads take no lock: a look-up is two dict reads, a clock read and one
    count (each atomic under the GIL), because a list page makes thousands of
    them. Writes (put, eviction, forget) take the lock. The bounds hold on
    every read: an entry older than max_age_seconds, loaded "in the future"
    (the clock went back), used max_uses times, or dropped, is never returned.
    """

    def __init__(self, *, max_age_seconds: float = MAX_CACHE_SECONDS, max_uses: int = DEFAULT_MAX_USES) -> None:
        self.max_age_seconds = min(float(max_age_seconds), float(MAX_CACHE_SECONDS))
        self.max_uses = max(1, int(max_uses))
        self._by_tenant: dict[int, dict[tuple[str, int], _Entry]] = {}
        self._lock = threading.Lock()

    def fresh_entry(self, tenant_id: int, purpose: str, version: int) -> _Entry | None:
        """The entry, counting one use; None (and evicted) when absent, too old or used up."""
        entries = self._by_tenant.get(tenant_id)
        if entries is None:
            return None
        entry = entries.get((purpose, version))
        if entry is None:
            return None
        now = time.time()
        if entry.loaded_at <= now < entry.expires_at and next(entry.uses) < self.max_uses:
            return entry
        self._evict(tenant_id, (purpose, version), entry)
        return None

    def fresh_aead(self, tenant_id: int, purpose: str, version: int) -> AESGCM | None:
        """The key's AES-GCM cipher object, counting one use; None as for fresh_entry (positional: hot path)."""
        entry = self.fresh_entry(tenant_id, purpose, version)
        return entry.aead if entry is not None else None

    def _evict(self, tenant_id: int, slot: tuple[str, int], entry: _Entry) -> None:
        with self._lock:
            entries = self._by_tenant.get(tenant_id)
            # Only this entry: another thread may have put a fresh one meanwhile.
            if entries is not None and entries.get(slot) is entry:
                del entries[slot]
        entry.retire()

    def get(self, *, tenant_id: int, purpose: str, version: int) -> bytes | None:
        """The key, counting one use; None when absent, too old or used up."""
        entry = self.fresh_entry(tenant_id, purpose, version)
        return entry.material.bytes() if entry is not None else None

    def get_aead(self, *, tenant_id: int, purpose: str, version: int) -> AESGCM | None:
        """The key's AES-GCM cipher object, counting one use; None as for get()."""
        return self.fresh_aead(tenant_id, purpose, version)

    def put(self, *, tenant_id: int, purpose: str, version: int, key: bytes) -> None:
        now = time.time()
        entry = _Entry(
            material=_KeyMaterial(key), aead=AESGCM(key), loaded_at=now, expires_at=now + self.max_age_seconds
        )
        with self._lock:
            entries = self._by_tenant.setdefault(tenant_id, {})
            old = entries.get((purpose, version))
            entries[(purpose, version)] = entry
            expired = self._take_expired(now)
        for dropped in (old, *expired):
            if dropped is not None:
                dropped.retire()

    def _take_expired(self, now: float) -> list[_Entry]:
        # Caller holds the lock. Look-ups evict only what they find, so a key
        # nobody asks for again would outlive its bound; every put (a new key
        # is unwrapped at most every few minutes per key) sweeps the rest.
        expired = []
        for entries in self._by_tenant.values():
            for slot, entry in list(entries.items()):
                if not entry.loaded_at <= now < entry.expires_at:
                    expired.append(entries.pop(slot))
        return expired

    def forget_tenant(self, tenant_id: int) -> None:
        with self._lock:
            dropped = self._by_tenant.pop(tenant_id, {})
        for entry in dropped.values():
            entry.retire()

    def clear(self) -> None:
        with self._lock:
            dropped = [entry for entries in self._by_tenant.values() for entry in entries.values()]
            self._by_tenant.clear()
        for entry in dropped:
            entry.retire()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(entries) for entries in self._by_tenant.values())

    def __repr__(self) -> str:
        return f"DataKeyCache(entries={len(self)}, max_age={self.max_age_seconds}s, max_uses={self.max_uses})"


def _cache_settings() -> tuple[float, int]:
    seconds = float(getattr(settings, "SETTLE_DATA_KEY_CACHE_SECONDS", MAX_CACHE_SECONDS))
    uses = int(getattr(settings, "SETTLE_DATA_KEY_CACHE_MAX_USES", DEFAULT_MAX_USES))
    return min(seconds, MAX_CACHE_SECONDS), uses


# The setting, read once (reading settings costs more than the cache look-up it
# guards); re-read when a test or override_settings changes it.
_active_seconds: float | None = None


def _active_version_seconds() -> float:
    global _active_seconds
    if _active_seconds is None:
        value = float(getattr(settings, "SETTLE_ACTIVE_KEY_CACHE_SECONDS", DEFAULT_ACTIVE_VERSION_SECONDS))
        _active_seconds = min(max(value, 0.0), float(MAX_CACHE_SECONDS))
    return _active_seconds


@receiver(setting_changed)
def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    global _active_seconds
    if setting == "SETTLE_ACTIVE_KEY_CACHE_SECONDS":
        _active_seconds = None


_seconds, _uses = _cache_settings()
key_cache = DataKeyCache(max_age_seconds=_seconds, max_uses=_uses)

# (tenant_id, purpose) -> (active version, looked up at). Bounded by
# SETTLE_ACTIVE_KEY_CACHE_SECONDS: a rotation waits that long after activating
# a new version before it checks that nothing uses the old one.
_active_versions: dict[tuple[int, str], tuple[int, float]] = {}
_active_lock = threading.Lock()

# Digests of wrapped keys created by this process whose transaction has not
# committed (yet, or ever). Such keys are never cached.
_uncommitted: set[str] = set()


def _digest(wrapped: bytes | memoryview) -> str:
    return hashlib.sha256(bytes(wrapped)).hexdigest()[:32]


def forget_tenant(tenant_id: int) -> None:
    """Drop every cached key and active version of one tenant (after a rotation or an incident)."""
    key_cache.forget_tenant(tenant_id)
    pending = getattr(connection, _PENDING_ATTR, None)
    if pending:
        for cache_key in [k for k in pending if k[0] == tenant_id]:
            del pending[cache_key]
    with _active_lock:
        for cache_key in [k for k in _active_versions if k[0] == tenant_id]:
            del _active_versions[cache_key]
        for cache_key in [k for k in _pending_holders if k[0] == tenant_id]:
            del _pending_holders[cache_key]


def forget_all() -> None:
    key_cache.clear()
    if getattr(connection, _PENDING_ATTR, None):
        setattr(connection, _PENDING_ATTR, {})
    with _active_lock:
        _active_versions.clear()
        _pending_holders.clear()


# --- Data key rows ---------------------------------------------------------------------


def _unwrap(row: DataKey) -> bytes:
    provider = get_provider(row.provider)
    context = encryption_context(tenant_id=row.tenant_id, purpose=row.purpose, version=row.version)
    return provider.unwrap(wrapped=bytes(row.wrapped_key), key_id=row.wrapping_key_id, context=context)


def _remember(row: DataKey, key: bytes) -> None:
    if _digest(row.wrapped_key) in _uncommitted:
        return
    key_cache.put(tenant_id=row.tenant_id, purpose=row.purpose, version=row.version, key=key)


def data_key_create(
    *, tenant_id: int, purpose: str, version: int, state: str = DataKeyState.ACTIVE
) -> tuple[DataKey, bytes]:
    """Generate a data key with the current provider and store it wrapped.

    Returns the row and the plaintext key (for immediate use; it is cached only
    once the surrounding transaction commits). Raises KeyUnavailableError when
    the provider cannot generate one, IntegrityError when the version exists.
    """
    if purpose not in KeyPurpose.values:
        raise ValueError(f"unknown data key purpose {purpose!r}")
    pending = getattr(connection, _PENDING_ATTR, None)
    if pending:
        pending.pop((tenant_id, purpose), None)  # a new version supersedes it
    provider = get_provider()
    generated = provider.generate_data_key(
        context=encryption_context(tenant_id=tenant_id, purpose=purpose, version=version)
    )
    row = DataKey(
        tenant_id=tenant_id,
        purpose=purpose,
        version=version,
        state=state,
        provider=provider.name,
        wrapping_key_id=generated.key_id,
        wrapped_key=generated.wrapped,
    )
    digest = _digest(generated.wrapped)
    _uncommitted.add(digest)
    row.save()

    def _committed() -> None:
        _uncommitted.discard(digest)
        key_cache.put(tenant_id=tenant_id, purpose=purpose, version=version, key=generated.plaintext)

    transaction.on_commit(_committed)
    return row, generated.plaintext


# Keys this connection created in a transaction that is still open, usable
# only while every atomic block that was open at creation is still open (the
# same objects): once any of them exits, committed or rolled back, the entry is
# ignored and the database decides. Lives on the connection (thread-local).
_PENDING_ATTR = "_settle_pending_data_keys"


# (tenant id, purpose) -> {id of a connection holding a pending key for it:
# when it was kept}. Lets _pending answer "none" with one dict read instead of
# looking at the connection (~3 us through Django's connection proxy, on every
# seal). A connection drops out when its own look-up finds its key stale, or
# after the cache's age bound (its key is stale by then anyway). Losing an
# entry here would only cost an unwrap: inside its own transaction the
# connection still reads its uncommitted DataKey row from the database.
_pending_holders: dict[tuple[int, str], dict[int, float]] = {}


def _drop_pending_holder(cache_key: tuple[int, str], holder: int) -> None:
    """Forget `holder` for `cache_key`, and every holder older than the age bound."""
    now = time.time()
    with _active_lock:
        holders = _pending_holders.get(cache_key, {})
        holders.pop(holder, None)
        for other, kept_at in list(holders.items()):
            if not 0 <= now - kept_at < key_cache.max_age_seconds:
                del holders[other]
        if not holders:
            _pending_holders.pop(cache_key, None)


def _pending(tenant_id: int, purpose: str, version: int | None) -> tuple[int, bytes] | None:
    cache_key = (tenant_id, purpose)
    if cache_key not in _pending_holders:
        return None  # no connection holds one: the common case, without the connection look-up
    current_connection = connections[DEFAULT_DB_ALIAS]
    entries: dict[tuple[int, str], Any] = getattr(current_connection, _PENDING_ATTR, None) or {}
    entry = entries.get(cache_key)
    if entry is None:
        _drop_pending_holder(cache_key, id(current_connection))
        return None
    blocks, entry_version, key, created_at = entry
    current = current_connection.atomic_blocks
    age = time.time() - created_at
    stale = age < 0 or age >= key_cache.max_age_seconds  # the same 5-minute bound as the cache
    if stale or len(current) < len(blocks) or any(a is not b for a, b in zip(blocks, current, strict=False)):
        del entries[cache_key]
        _drop_pending_holder(cache_key, id(current_connection))
        return None
    if version is not None and version != entry_version:
        return None
    return entry_version, key


def _remember_pending(tenant_id: int, purpose: str, version: int, key: bytes, blocks: tuple[Any, ...]) -> None:
    if not blocks:
        return  # autocommit: committed already, and cached by on_commit
    current_connection = connections[DEFAULT_DB_ALIAS]
    entries = getattr(current_connection, _PENDING_ATTR, None)
    if entries is None:
        entries = {}
        setattr(current_connection, _PENDING_ATTR, entries)
    now = time.time()
    entries[(tenant_id, purpose)] = (blocks, version, key, now)
    with _active_lock:
        _pending_holders.setdefault((tenant_id, purpose), {})[id(current_connection)] = now


def _first_key(*, tenant_id: int, purpose: str) -> tuple[int, bytes]:
    """Create version 1 for a tenant's first use of a purpose; tolerate a concurrent creator."""
    blocks = tuple(connection.atomic_blocks)
    try:
        with transaction.atomic():
            row, key = data_key_create(tenant_id=tenant_id, purpose=purpose, version=1)
        _remember_pending(tenant_id, purpose, row.version, key, blocks)
        return row.version, key
    except IntegrityError:
        # Another process created it first (its transaction has committed,
        # or our insert would still be waiting on it).
        existing = DataKey.objects.filter(tenant_id=tenant_id, purpose=purpose, state=DataKeyState.ACTIVE).first()
        if existing is None:
            raise KeyUnavailableError(f"no active {purpose} data key for tenant {tenant_id}") from None
        return existing.version, decryption_key(tenant_id=tenant_id, purpose=purpose, version=existing.version)


def active_version(*, tenant_id: int, purpose: str) -> int | None:
    """The active version for (tenant, purpose), None when the tenant has none yet."""
    pending = _pending(tenant_id, purpose, None)
    if pending is not None:
        return pending[0]
    now = time.time()
    ttl = _active_version_seconds()
    cached = _active_versions.get((tenant_id, purpose))  # one dict read: atomic, no lock needed
    if cached is not None and 0 <= now - cached[1] < ttl:
        return cached[0]
    row = (
        DataKey.objects.filter(tenant_id=tenant_id, purpose=purpose, state=DataKeyState.ACTIVE)
        .only("version", "wrapped_key")
        .first()
    )
    if row is None:
        return None
    if ttl > 0 and _digest(row.wrapped_key) not in _uncommitted:
        with _active_lock:
            _active_versions[(tenant_id, purpose)] = (row.version, now)
    return row.version


def encryption_key(*, tenant_id: int, purpose: str) -> tuple[int, bytes]:
    """(version, key) to seal new values for this tenant and purpose; creates v1 on first use."""
    version = active_version(tenant_id=tenant_id, purpose=purpose)
    if version is None:
        return _first_key(tenant_id=tenant_id, purpose=purpose)
    return version, decryption_key(tenant_id=tenant_id, purpose=purpose, version=version)


def decryption_key(*, tenant_id: int, purpose: str, version: int) -> bytes:
    """The plaintext key of one version. Raises UnknownDataKeyError or KeyUnavailableError."""
    cached = key_cache.get(tenant_id=tenant_id, purpose=purpose, version=version)
    if cached is not None:
        return cached
    pending = _pending(tenant_id, purpose, version)
    if pending is not None:
        return pending[1]
    row = DataKey.objects.filter(tenant_id=tenant_id, purpose=purpose, version=version).first()
    if row is None:
        raise UnknownDataKeyError(f"tenant {tenant_id} has no {purpose} data key version {version}")
    key = _unwrap(row)
    _remember(row, key)
    return key


def live_versions(*, tenant_id: int, purpose: str) -> list[int]:
    """Versions that may still be referenced (active first, then retiring). For blind-index look-ups."""
    rows = list(
        DataKey.objects.filter(tenant_id=tenant_id, purpose=purpose)
        .exclude(state=DataKeyState.RETIRED)
        .order_by("-version")
        .values_list("version", "state")
    )
    rows.sort(key=lambda row: (row[1] != DataKeyState.ACTIVE, -row[0]))
    return [version for version, _ in rows]


def encryption_aead(*, tenant_id: int, purpose: str) -> tuple[int, AESGCM]:
    """(version, AES-GCM cipher) to seal new values; the cached cipher when there is one."""
    version = active_version(tenant_id=tenant_id, purpose=purpose)
    if version is not None:
        cached = key_cache.get_aead(tenant_id=tenant_id, purpose=purpose, version=version)
        if cached is not None:
            return version, cached
    version, key = encryption_key(tenant_id=tenant_id, purpose=purpose)
    return version, AESGCM(key)


def decryption_aead(*, tenant_id: int, purpose: str, version: int) -> AESGCM:
    """The AES-GCM cipher of one key version (cached when possible); errors as decryption_key."""
    cached = key_cache.get_aead(tenant_id=tenant_id, purpose=purpose, version=version)
    if cached is not None:
        return cached
    return AESGCM(decryption_key(tenant_id=tenant_id, purpose=purpose, version=version))
