from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from security.models import CspViolation, User


@admin.register(User)
class UserAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("email", "full_name", "is_active", "is_staff", "is_platform_operator", "date_joined")
    search_fields = ("email", "full_name")
    readonly_fields = ("public_id", "date_joined", "last_login", "password")
    exclude = ("groups", "user_permissions")


@admin.register(CspViolation)
class CspViolationAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Read-only: violations are written by browsers' reports (security.headers)."""

    list_display = ("created_at", "tenant", "directive", "blocked", "document_path")
    list_filter = ("directive",)
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
