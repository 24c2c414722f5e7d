"""Payment receipts as PDF."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from fpdf import FPDF

from billing.models import Payment
from billing.services.ledger import statement_balance
from portal.models import Tenant


def _latin1(text: str) -> str:
    # The core PDF fonts are Latin-1; replace anything else rather than fail.
    return text.encode("latin-1", "replace").decode("latin-1")


def _hex_to_rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)


def clinic_address_lines(tenant: Tenant) -> list[str]:
    """The clinic's postal address as printed: only the parts it has set."""
    city_line = ", ".join(
        part for part in (tenant.city, " ".join(p for p in (tenant.state, tenant.postal_code) if p)) if part
    )
    return [line for line in (tenant.address_line1, tenant.address_line2, city_line) if line]


def _support_contact(tenant: Tenant) -> str:
    return " or ".join(x for x in (tenant.support_phone, tenant.support_email) if x)


def receipt_document(*, tenant: Tenant, title: str, heading: str, rows: list[tuple[str, str]], footer: str) -> bytes:
    """A one-page receipt in the clinic's colours: name, address, heading, labelled rows, a footer."""
    pdf = FPDF(format="Letter")
    pdf.set_title(title)
    pdf.set_author(tenant.name)
    pdf.set_creator("Settle")
    pdf.add_page()
    pdf.set_fill_color(*_hex_to_rgb(tenant.brand_colour))
    pdf.rect(0, 0, pdf.w, 18, style="F")
    pdf.set_y(28)
    pdf.set_font("Helvetica", "B", 18)
    pdf.cell(0, 10, _latin1(tenant.name), new_x="LMARGIN", new_y="NEXT")
    address = clinic_address_lines(tenant)
    if address:
        pdf.set_font("Helvetica", "", 10)
        for line in address:
            pdf.cell(0, 5, _latin1(line), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
    pdf.set_font("Helvetica", "", 12)
    pdf.cell(0, 8, heading, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    for label, value in rows:
        pdf.set_font("Helvetica", "B", 11)
        pdf.cell(80, 9, _latin1(label))
        pdf.set_font("Helvetica", "", 11)
        pdf.cell(0, 9, _latin1(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(8)
    pdf.set_font("Helvetica", "", 10)
    pdf.multi_cell(0, 6, _latin1(footer))
    return bytes(pdf.output())


def receipt_pdf(*, payment: Payment) -> bytes:
    """Render the receipt of a succeeded payment."""
    if not payment.receipt_number or payment.succeeded_at is None:
        raise ValueError("only a succeeded payment has a receipt")
    tenant = payment.tenant
    statement = payment.statement
    paid_at = payment.succeeded_at.astimezone(ZoneInfo(tenant.timezone))
    remaining = statement_balance(statement=statement)
    rows = [
        ("Receipt number", payment.receipt_number),
        ("Date paid", paid_at.strftime("%B %d, %Y at %I:%M %p %Z")),
        ("Statement", statement.number),
        ("Statement date", statement.statement_date.strftime("%B %d, %Y")),
        ("Amount paid", str(payment.amount)),
        ("Paid with", f"{(payment.card_brand or 'Card').title()} ending in {payment.card_last4 or '----'}"),
        ("Remaining balance on this statement", str(remaining)),
    ]
    if payment.processor_payment_intent_id:
        # What the clinic quotes to the processor about this payment (an opaque id).
        rows.append(("Processor reference", payment.processor_payment_intent_id))
    footer = "Thank you for your payment."
    contact = _support_contact(tenant)
    if contact:
        footer += f" Questions about your bill? Contact {tenant.name} at {contact}."
    return receipt_document(
        tenant=tenant, title=f"Receipt {payment.receipt_number}", heading="Payment receipt", rows=rows, footer=footer
    )
