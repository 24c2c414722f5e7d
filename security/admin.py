from __future__ import annotations

from django.contrib import admin

from security.models import User


@admin.register(User)
class UserAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("email", "full_name", "is_active", "is_staff", "is_platform_operator", "date_joined")
    search_fields = ("email", "full_name")
    readonly_fields = ("public_id", "date_joined", "last_login", "password")
    exclude = ("groups", "user_permissions")
