"""Which processor a tenant's payments go through."""

from __future__ import annotations

from collections.abc import Callable

from billing.models import ProcessorAccount
from billing.processor.base import Processor
from portal.models import Tenant

ProcessorFactory = Callable[[Tenant, ProcessorAccount], Processor]


def _stripe_factory(tenant: Tenant, account: ProcessorAccount) -> Processor:
    from billing.processor.stripe_processor import StripeProcessor

    return StripeProcessor(secret_key=account.secret_key, publishable_key=account.publishable_key)


_factory: ProcessorFactory = _stripe_factory


def set_processor_factory(factory: ProcessorFactory | None) -> None:
    """Swap the processor (tests use a scripted fake); None restores Stripe."""
    global _factory
    _factory = factory or _stripe_factory


def get_processor(tenant: Tenant) -> Processor:
    account = ProcessorAccount.objects.get(tenant=tenant)
    return _factory(tenant, account)
