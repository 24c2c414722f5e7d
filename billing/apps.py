from __future__ import annotations

from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The audit console names patients through this (audit sits below billing).
        from billing.audit_subjects import register

        register()
