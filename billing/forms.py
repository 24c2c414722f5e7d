from __future__ import annotations

import datetime
from typing import Any

from django import forms

from billing.adjustment_models import AdjustmentReason
from billing.models import PaymentChannel, PaymentStatus
from billing.services.adjustments import NOTE_MAX_LENGTH as ADJUSTMENT_NOTE_MAX_LENGTH
from billing.services.payment_search import PaymentFilters
from billing.services.refunds import NOTE_MAX_LENGTH as REJECTION_REASON_MAX_LENGTH
from portal.money import Money, MoneyParseError
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


class PaymentFilterForm(forms.Form):
    """The payment list's filters (a GET form: none of them is PHI, so they may sit in the URL)."""

    date_from = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    status = forms.ChoiceField(label="Status", required=False, choices=[("", "Any status"), *PaymentStatus.choices])
    amount_min = forms.CharField(label="Amount from", required=False, max_length=20)
    amount_max = forms.CharField(label="Amount to", required=False, max_length=20)
    statement = forms.CharField(label="Statement number", required=False, max_length=32)
    last4 = forms.CharField(label="Card last 4", required=False, max_length=4)
    channel = forms.ChoiceField(label="Channel", required=False, choices=[("", "Any channel"), *PaymentChannel.choices])

    def __init__(self, *args: Any, currency: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.currency = currency

    def _amount(self, name: str) -> int | None:
        text = self.cleaned_data.get(name, "").strip()
        if not text:
            return None
        try:
            return Money.parse(text, self.currency).minor_units
        except MoneyParseError as error:
            raise forms.ValidationError(str(error)) from None

    def clean_amount_min(self) -> int | None:
        return self._amount("amount_min")

    def clean_amount_max(self) -> int | None:
        return self._amount("amount_max")

    def clean_last4(self) -> str:
        text: str = self.cleaned_data.get("last4", "").strip()
        if text and (len(text) != 4 or not all(ch in "0123456789" for ch in text)):
            raise forms.ValidationError("Enter the last 4 digits of the card.")
        return text

    def clean_statement(self) -> str:
        return " ".join(self.cleaned_data.get("statement", "").split())

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end date is before the start date.")
        low, high = data.get("amount_min"), data.get("amount_max")
        if low is not None and high is not None and low > high:
            self.add_error("amount_max", "The upper amount is below the lower one.")
        return data

    def filters(self) -> PaymentFilters:
        """The valid filters."""
        data = self.cleaned_data
        return PaymentFilters(
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
            status=data.get("status") or "",
            amount_min_minor=data.get("amount_min"),
            amount_max_minor=data.get("amount_max"),
            statement_number=data.get("statement") or "",
            card_last4=data.get("last4") or "",
            channel=data.get("channel") or "",
        )


DECREASE = "decrease"
INCREASE = "increase"


class AdjustmentForm(forms.Form):
    direction = forms.ChoiceField(
        label="Balance",
        choices=[(DECREASE, "Lower it (write-off, discount)"), (INCREASE, "Raise it")],
        initial=DECREASE,
    )
    amount = forms.CharField(label="Amount", max_length=20)
    reason = forms.ChoiceField(label="Reason")
    note = forms.CharField(
        label="Note (optional)",
        max_length=ADJUSTMENT_NOTE_MAX_LENGTH,
        required=False,
        help_text="For the approver and the record.",
    )

    def __init__(self, *args: Any, reasons: list[AdjustmentReason], currency: str, **kwargs: Any) -> None:
        """`reasons`: the clinic's active reasons (billing.services.adjustments.adjustment_reasons_for)."""
        super().__init__(*args, **kwargs)
        self.currency = currency
        self.reasons = {str(r.public_id): r for r in reasons}
        field = self.fields["reason"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [("", "Choose a reason"), *((key, r.label) for key, r in self.reasons.items())]

    def clean_amount(self) -> Money:
        try:
            amount = Money.parse(self.cleaned_data["amount"], self.currency)
        except MoneyParseError as error:
            raise forms.ValidationError(str(error)) from None
        if amount.minor_units == 0:
            raise forms.ValidationError("Enter an amount greater than zero.")
        return amount

    def clean_reason(self) -> AdjustmentReason:
        return self.reasons[self.cleaned_data["reason"]]

    def signed_amount(self) -> Money:
        amount: Money = self.cleaned_data["amount"]
        return -amount if self.cleaned_data["direction"] == DECREASE else amount


class StatementImportForm(forms.Form):
    """The console's statement upload (billing.services.statement_import_file checks the file)."""

    file = forms.FileField(
        label="Statement file (CSV, UTF-8)",
        help_text="One row per statement, the first line naming the columns. Up to 20 MB.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
    )


class RejectForm(forms.Form):
    """The reason an approver gives for rejecting a refund or an adjustment (kept, shown to the requester)."""

    reason = forms.CharField(label="Why is it rejected?", max_length=REJECTION_REASON_MAX_LENGTH)
