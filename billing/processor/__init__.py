"""The card processor behind one small interface (Stripe today)."""

from billing.processor.base import (
    CardDeclined,
    DisputeSnapshot,
    IntentSnapshot,
    Processor,
    ProcessorError,
    ProcessorUnavailable,
    RefundSnapshot,
    SetupSnapshot,
    WebhookEvent,
    WebhookRejected,
)
from billing.processor.registry import get_processor, set_processor_factory

__all__ = [
    "CardDeclined",
    "DisputeSnapshot",
    "IntentSnapshot",
    "Processor",
    "ProcessorError",
    "ProcessorUnavailable",
    "RefundSnapshot",
    "SetupSnapshot",
    "WebhookEvent",
    "WebhookRejected",
    "get_processor",
    "set_processor_factory",
]
