"""Which processor a tenant's payments go through."""

from __future__ import annotations

from collections.abc import Callable

from billing.models import ProcessorAccount
from billing.processor.base import Processor, ProcessorAdmin
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


# Account-level calls with a key that is not saved yet (the settings page).
ProcessorAdminFactory = Callable[[str], ProcessorAdmin]


def _stripe_admin_factory(secret_key: str) -> ProcessorAdmin:
    from billing.processor.stripe_admin import StripeAdmin

    return StripeAdmin(secret_key=secret_key)


_admin_factory: ProcessorAdminFactory = _stripe_admin_factory


def set_processor_admin_factory(factory: ProcessorAdminFactory | None) -> None:
    """Swap the account-level processor (tests script refusals); None restores Stripe."""
    global _admin_factory
    _admin_factory = factory or _stripe_admin_factory


def get_processor_admin(*, secret_key: str) -> ProcessorAdmin:
    return _admin_factory(secret_key)
