"""Refund receipts as PDF, in the style of the payment receipt (billing.services.receipts)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from fpdf import FPDF

from billing.refund_models import Refund, RefundStatus
from billing.services.ledger import statement_balance
from billing.services.receipts import _hex_to_rgb, _latin1


def refund_receipt_pdf(*, refund: Refund) -> bytes:
    """Render the receipt of a refund the processor confirmed."""
    if refund.status != RefundStatus.SUCCEEDED or refund.succeeded_at is None:
        raise ValueError("only a succeeded refund has a receipt")
    payment = refund.payment
    tenant = refund.tenant
    statement = payment.statement
    refunded_at = refund.succeeded_at.astimezone(ZoneInfo(tenant.timezone))

    pdf = FPDF(format="Letter")
    pdf.set_title(f"Refund receipt {refund.receipt_number}")
    pdf.set_author(tenant.name)
    pdf.set_creator("Settle")
    pdf.add_page()
    pdf.set_fill_color(*_hex_to_rgb(tenant.brand_colour))
    pdf.rect(0, 0, pdf.w, 18, style="F")
    pdf.set_y(28)
    pdf.set_font("Helvetica", "B", 18)
    pdf.cell(0, 10, _latin1(tenant.name), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 12)
    pdf.cell(0, 8, "Refund receipt", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
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
    for label, value in rows:
        pdf.set_font("Helvetica", "B", 11)
        pdf.cell(80, 9, _latin1(label))
        pdf.set_font("Helvetica", "", 11)
        pdf.cell(0, 9, _latin1(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(8)
    pdf.set_font("Helvetica", "", 10)
    pdf.multi_cell(
        0,
        6,
        _latin1(
            "Refunds reach the card in 5-10 business days, depending on the bank. "
            f"Questions? Contact {tenant.name}"
            + (
                f" at {' or '.join(x for x in (tenant.support_phone, tenant.support_email) if x)}."
                if (tenant.support_phone or tenant.support_email)
                else "."
            )
        ),
    )
    return bytes(pdf.output())
