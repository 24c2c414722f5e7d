"""Base class and manager for tenant-owned models."""

from __future__ import annotations

from typing import Any, TypeVar

from django.db import models

from portal.tenancy.context import TenantScopeError, active_scope

_M = TypeVar("_M", bound=models.Model)


class TenantScopedQuerySet(models.QuerySet[_M]):
    pass


class TenantScopedManager(models.Manager[_M]):
    """Default manager of tenant-owned models: fails closed outside a scope."""

    def get_queryset(self) -> models.QuerySet[_M]:
        scope = active_scope()
        if scope is None:
            raise TenantScopeError(
                f"{self.model._meta.label} queried outside a tenant scope; "
                "wrap the code in tenant_scope(tenant) or platform_scope()"
            )
        queryset: TenantScopedQuerySet[_M] = TenantScopedQuerySet(self.model, using=self._db)
        if scope.tenant is None:
            return queryset
        return queryset.filter(tenant_id=scope.tenant.pk)


class TenantOwnedModel(models.Model):
    """Every row belongs to exactly one tenant.

    `objects` (the default manager) is scoped. Django's internals use a plain
    base manager for saving and for following a foreign key from a row that
    was already loaded in scope, which is safe: the row itself came through
    the scoped manager.
    """

    tenant = models.ForeignKey("portal.Tenant", on_delete=models.PROTECT, related_name="+")

    objects = TenantScopedManager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        scope = active_scope()
        if scope is None:
            raise TenantScopeError(f"{self._meta.label} saved outside a tenant scope")
        if scope.tenant is not None and self.tenant_id != scope.tenant.pk:
            raise TenantScopeError(f"{self._meta.label} saved for another tenant")
        super().save(*args, **kwargs)
