"""A clinic's processor (Stripe) settings."""

from __future__ import annotations

from django.db import transaction

from billing.models import CardCheckPolicy, ProcessorAccount
from portal.models import Tenant


def processor_account_set(
    *,
    tenant: Tenant,
    publishable_key: str,
    secret_key: str,
    webhook_secret: str,
    card_check_policy: str = CardCheckPolicy.FLAG,
) -> ProcessorAccount:
    """Create or replace the tenant's Stripe keys and card-check policy."""
    if not publishable_key.startswith("pk_") or not secret_key.startswith(("sk_", "rk_")):
        raise ValueError("Stripe keys must start with pk_ (publishable) and sk_ or rk_ (secret)")
    if not webhook_secret:
        raise ValueError("the webhook signing secret is required")
    if card_check_policy not in CardCheckPolicy.values:
        raise ValueError(f"unknown card-check policy {card_check_policy!r}")
    with transaction.atomic():
        account, _ = ProcessorAccount.objects.update_or_create(
            tenant=tenant,
            defaults={
                "publishable_key": publishable_key,
                "secret_key": secret_key,
                "webhook_secret": webhook_secret,
                "card_check_policy": card_check_policy,
            },
        )
    return account
