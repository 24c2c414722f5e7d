from __future__ import annotations

import datetime
from typing import Any

from django import forms

from security.crypto.normalize import normalize_date

DOB_INPUT_FORMATS = ["%Y-%m-%d", "%m/%d/%Y", "%m-%d-%Y", "%m.%d.%Y"]


class StatementLookupForm(forms.Form):
    statement_number = forms.CharField(
        label="Statement number",
        max_length=32,
        help_text="Printed at the top right of your statement.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "characters", "spellcheck": "false"}),
    )
    date_of_birth = forms.DateField(
        label="Patient's date of birth",
        input_formats=DOB_INPUT_FORMATS,
        help_text="The date of birth of the patient named on the statement.",
        widget=forms.DateInput(attrs={"type": "date", "autocomplete": "bday"}, format="%Y-%m-%d"),
        error_messages={"invalid": "Enter the date of birth as shown, for example 03/14/1985."},
    )

    def __init__(self, *args: Any, statement_number_hint: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The clinic's own example (Tenant.statement_number_hint); none when it set none,
        # since another clinic's format would mislead its patients.
        if statement_number_hint:
            field = self.fields["statement_number"]
            field.help_text = f"Printed at the top right of your statement, e.g. {statement_number_hint}."


class PaymentSubmitForm(forms.Form):
    # Only these two fields are read from the browser; the statement, currency
    # and everything else come from the server-side checkout.
    amount = forms.CharField(max_length=20)
    setup_intent_id = forms.CharField(max_length=255)


class PatientSearchForm(forms.Form):
    """The staff patient search: one box for any exact key, a date of birth, or both."""

    q = forms.CharField(
        label="Name, account or statement number, email or phone",
        max_length=254,
        required=False,
        widget=forms.TextInput(attrs={"type": "search", "autocomplete": "off", "spellcheck": "false"}),
    )
    date_of_birth = forms.CharField(
        label="Date of birth",
        max_length=32,
        required=False,
        help_text=(
            "Narrows a name search, or on its own lists the patients born that day. "
            "Any usual form: 03/14/1985, 1985-03-14, 14 Mar 1985."
        ),
        widget=forms.TextInput(attrs={"autocomplete": "off", "inputmode": "numeric"}),
    )

    def clean_date_of_birth(self) -> datetime.date | None:
        text = self.cleaned_data.get("date_of_birth", "").strip()
        if not text:
            return None
        try:
            return datetime.date.fromisoformat(normalize_date(text))
        except ValueError:
            raise forms.ValidationError("Enter the date of birth as a date, for example 03/14/1985.") from None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not self.errors and not cleaned.get("q", "").strip() and not cleaned.get("date_of_birth"):
            raise forms.ValidationError(
                "Enter a name, account or statement number, email or phone, or a date of birth."
            )
        return cleaned
