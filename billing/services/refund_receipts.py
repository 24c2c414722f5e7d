"""Refund receipts as PDF, laid out as the payment receipt (billing.services.receipts)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from billing.refund_models import Refund, RefundStatus
from billing.services.ledger import statement_balance
from billing.services.receipts import _support_contact, receipt_document


def refund_receipt_pdf(*, refund: Refund) -> bytes:
    """Render the receipt of a refund the processor confirmed."""
    if refund.status != RefundStatus.SUCCEEDED or refund.succeeded_at is None:
        raise ValueError("only a succeeded refund has a receipt")
    payment = refund.payment
    tenant = refund.tenant
    statement = payment.statement
    refunded_at = refund.succeeded_at.astimezone(ZoneInfo(tenant.timezone))
    rows = [
        ("Refund receipt number", refund.receipt_number),
        ("Date refunded", refunded_at.strftime("%B %d, %Y at %I:%M %p %Z")),
        ("Amount refunded", str(refund.amount)),
        ("Refunded to", f"{(payment.card_brand or 'Card').title()} ending in {payment.card_last4 or '----'}"),
        ("Original payment", f"{payment.amount}, receipt {payment.receipt_number}"),
        ("Statement", statement.number),
        ("Reason", refund.get_reason_display()),
        ("Balance on this statement now", str(statement_balance(statement=statement))),
        ("Processor reference", refund.processor_refund_id or ""),
    ]
    footer = "Refunds reach the card in 5-10 business days, depending on the bank."
    contact = _support_contact(tenant)
    footer += f" Questions? Contact {tenant.name}" + (f" at {contact}." if contact else ".")
    return receipt_document(
        tenant=tenant,
        title=f"Refund receipt {refund.receipt_number}",
        heading="Refund receipt",
        rows=rows,
        footer=footer,
    )
