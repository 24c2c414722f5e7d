from __future__ import annotations

from django.contrib import admin

from portal.models import Tenant


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "slug", "custom_domain", "currency", "is_active", "suspended_at", "created_at")
    search_fields = ("name", "slug", "custom_domain")
    # Suspension and the custom domain (with its DNS token and verification)
    # are audited acts of the platform console (security.clinics,
    # security.domains); the admin only shows them.
    readonly_fields = (
        "public_id",
        "created_at",
        "suspended_at",
        "suspension_reason",
        "custom_domain",
        "custom_domain_token",
        "custom_domain_verified_at",
    )
