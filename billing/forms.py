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
        help_text="Printed at the top right of your statement, e.g. DC-100234.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "characters", "spellcheck": "false"}),
    )
    date_of_birth = forms.DateField(
        label="Patient's date of birth",
        input_formats=DOB_INPUT_FORMATS,
        help_text="The date of birth of the patient named on the statement.",
        widget=forms.DateInput(attrs={"type": "date", "autocomplete": "bday"}, format="%Y-%m-%d"),
        error_messages={"invalid": "Enter the date of birth as shown, for example 03/14/1985."},
    )


class PaymentSubmitForm(forms.Form):
    # Only these two fields are read from the browser; the statement, currency
    # and everything else come from the server-side checkout.
    amount = forms.CharField(max_length=20)
    setup_intent_id = forms.CharField(max_length=255)


class PatientSearchForm(forms.Form):
    """The staff patient search: one box for any exact key, and an optional date of birth."""

    q = forms.CharField(
        label="Last name, full name, account number, email or phone",
        max_length=254,
        required=False,
        widget=forms.TextInput(attrs={"type": "search", "autocomplete": "off", "spellcheck": "false"}),
    )
    date_of_birth = forms.CharField(
        label="Date of birth (optional)",
        max_length=32,
        required=False,
        help_text="Any usual form: 03/14/1985, 1985-03-14, 14 Mar 1985.",
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
        if cleaned.get("date_of_birth") and not cleaned.get("q", "").strip():
            raise forms.ValidationError("Enter a last name, account number, email or phone with the date of birth.")
        return cleaned


class StatementImportForm(forms.Form):
    """The console's statement upload (billing.services.statement_import_file checks the file)."""

    file = forms.FileField(
        label="Statement file (CSV, UTF-8)",
        help_text="One row per statement, the first line naming the columns. Up to 20 MB.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
    )
