"""Platform services: onboarding clinics."""

from __future__ import annotations

from django.db import transaction

from portal.models import Tenant


def tenant_create(
    *,
    slug: str,
    name: str,
    currency: str = "USD",
    timezone: str = "America/New_York",
    brand_colour: str = "#1f6feb",
    minimum_payment_minor: int = 100,
    support_phone: str = "",
    support_email: str = "",
) -> Tenant:
    """Create a clinic. Platform operators only; validates every field."""
    tenant = Tenant(
        slug=slug,
        name=name,
        currency=currency,
        timezone=timezone,
        brand_colour=brand_colour,
        minimum_payment_minor=minimum_payment_minor,
        support_phone=support_phone,
        support_email=support_email,
    )
    tenant.full_clean()
    with transaction.atomic():
        tenant.save()
    return tenant
