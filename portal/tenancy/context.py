"""The active tenant scope for the current request, task or command."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.db.backends.signals import connection_created

if TYPE_CHECKING:
    from portal.models import Tenant

# Value written to the PostgreSQL setting for a platform-wide scope.
PLATFORM_SCOPE_SETTING = "*"
RLS_SETTING_NAME = "settle.tenant_id"


class TenantScopeError(RuntimeError):
    """A tenant-owned model was queried, or written, outside its scope."""


@dataclass(frozen=True)
class Scope:
    tenant: Tenant | None  # None means platform-wide (all tenants)

    @property
    def is_platform(self) -> bool:
        return self.tenant is None

    @property
    def setting_value(self) -> str:
        return PLATFORM_SCOPE_SETTING if self.tenant is None else str(self.tenant.pk)


_active_scope: ContextVar[Scope | None] = ContextVar("settle_tenant_scope", default=None)


def active_scope() -> Scope | None:
    return _active_scope.get()


def current_tenant() -> Tenant:
    """The tenant of the active scope; raises outside a single-tenant scope."""
    scope = _active_scope.get()
    if scope is None or scope.tenant is None:
        raise TenantScopeError("no tenant is active")
    return scope.tenant


def _write_rls_setting(value: str) -> None:
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, %s, false)", [RLS_SETTING_NAME, value])


def _restore_on_new_connection(sender: Any, connection: Any, **kwargs: Any) -> None:
    # A connection opened while a scope is active (first query of a request,
    # or a reconnect) must carry the scope too, or RLS would hide every row.
    scope = _active_scope.get()
    if connection.vendor == "postgresql" and scope is not None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config(%s, %s, false)", [RLS_SETTING_NAME, scope.setting_value])


connection_created.connect(_restore_on_new_connection)


@contextmanager
def _enter(scope: Scope) -> Iterator[Scope]:
    token = _active_scope.set(scope)
    try:
        _write_rls_setting(scope.setting_value)
        yield scope
    finally:
        _active_scope.reset(token)
        previous = _active_scope.get()
        # The connection may be gone; a new one starts clean (and picks up
        # the active scope in _restore_on_new_connection).
        with contextlib.suppress(Exception):
            _write_rls_setting(previous.setting_value if previous else "")


@contextmanager
def tenant_scope(tenant: Tenant) -> Iterator[Scope]:
    """Bind queries on tenant-owned models (and PostgreSQL RLS) to `tenant`."""
    with _enter(Scope(tenant=tenant)) as scope:
        yield scope


@contextmanager
def platform_scope() -> Iterator[Scope]:
    """Cross-tenant access for platform code (seeding, sweeps, operators).

    Every use must be deliberate: callers that act on behalf of a person write
    an audit event for the cross-tenant act.
    """
    with _enter(Scope(tenant=None)) as scope:
        yield scope
