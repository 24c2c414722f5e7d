from __future__ import annotations

from django import forms

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
