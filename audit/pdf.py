"""The PDF summary of an export (fpdf2, core fonts: Latin-1 text only)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fpdf import FPDF

from audit.actions import action_label
from audit.exportformat import SegmentStats


def _latin1(text: Any) -> str:
    return str(text).encode("latin-1", "replace").decode("latin-1")


def _table(pdf: FPDF, title: str, rows: Iterable[tuple[str, int]]) -> None:
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(0, 8, _latin1(title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    listed = False
    for name, count in rows:
        pdf.cell(120, 5, _latin1(name))
        pdf.cell(30, 5, str(count), align="R", new_x="LMARGIN", new_y="NEXT")
        listed = True
    if not listed:
        pdf.cell(0, 5, "(none)", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)


def summary_pdf(*, facts: list[tuple[str, str]], stats: SegmentStats, jsonl_name: str = "events.jsonl") -> bytes:
    """`jsonl_name`: the JSONL file's name as downloaded, for the verification hint."""
    pdf = FPDF()
    pdf.set_title("Audit export summary")
    pdf.set_creator("Settle")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 15)
    pdf.cell(0, 10, "Audit export summary", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    for label, value in facts:
        pdf.cell(45, 5, _latin1(label))
        pdf.multi_cell(0, 5, _latin1(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    verification = stats.verification
    pdf.set_font("Helvetica", "B", 11)
    verdict = verification.summary() if verification is not None else "not verified"
    pdf.multi_cell(0, 6, _latin1(f"Chain check at export time: {verdict}"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    _table(pdf, "Events by action", ((f"{action_label(a)} ({a})", n) for a, n in stats.by_action.most_common()))
    _table(pdf, "Events by outcome", stats.by_outcome.most_common())
    _table(pdf, "Events by actor role", stats.by_role.most_common())
    pdf.set_font("Helvetica", "", 8)
    pdf.multi_cell(
        0,
        4,
        _latin1(
            "The JSONL file of this export carries the chain segment and signed checkpoints; "
            f"verify it offline with: python -m audit.verify {jsonl_name} --public-key audit-signing.pem "
            "(the public key is on the console's Verify chain page)"
        ),
        new_x="LMARGIN",
        new_y="NEXT",
    )
    return bytes(pdf.output())
