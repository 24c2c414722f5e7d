from __future__ import annotations

from django.contrib import admin

from portal.models import Tenant


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "slug", "custom_domain", "currency", "is_active", "created_at")
    search_fields = ("name", "slug", "custom_domain")
    readonly_fields = ("public_id", "created_at")
