from __future__ import annotations

from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from billing.audit_subjects import register
        from billing.services.disputes import dispute_blocks_refund
        from billing.services.refunds import register_refund_blocker

        # The audit console names patients through this (audit sits below billing).
        register()
        # A disputed (or lost) payment cannot be refunded.
        register_refund_blocker(dispute_blocks_refund)
