"""The card processor behind one small interface (Stripe today)."""

from billing.processor.base import (
    AccountCheck,
    CardDeclined,
    DisputeSnapshot,
    EndpointApiUnavailable,
    EndpointSnapshot,
    IntentSnapshot,
    Processor,
    ProcessorAdmin,
    ProcessorError,
    ProcessorKeyRefused,
    ProcessorUnavailable,
    RefundSnapshot,
    SetupSnapshot,
    WebhookEvent,
    WebhookRejected,
)
from billing.processor.registry import (
    get_processor,
    get_processor_admin,
    set_processor_admin_factory,
    set_processor_factory,
)

__all__ = [
    "AccountCheck",
    "CardDeclined",
    "DisputeSnapshot",
    "EndpointApiUnavailable",
    "EndpointSnapshot",
    "IntentSnapshot",
    "Processor",
    "ProcessorAdmin",
    "ProcessorError",
    "ProcessorKeyRefused",
    "ProcessorUnavailable",
    "RefundSnapshot",
    "SetupSnapshot",
    "WebhookEvent",
    "WebhookRejected",
    "get_processor",
    "get_processor_admin",
    "set_processor_admin_factory",
    "set_processor_factory",
]
