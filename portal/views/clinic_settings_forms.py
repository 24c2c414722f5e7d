"""The clinic settings page's forms: fields, labels and the bounds of each value.

Rules that need the processor or Pillow live in the services
(billing.services.processor_accounts, billing.services.branding); their
errors come back to the field they name.
"""

from __future__ import annotations

import zoneinfo
from functools import cache
from typing import Any

from django import forms

from billing.models import CardCheckPolicy
from billing.services.branding import LOGO_MAX_BYTES
from billing.services.clinic_settings import (
    LOOKUP_IP_FAILURES,
    LOOKUP_LOCKOUT_MINUTES,
    LOOKUP_STATEMENT_FAILURES,
    MINIMUM_PAYMENT_MAX_MINOR,
)
from portal.models import Tenant
from portal.money import Money, MoneyParseError


@cache
def _timezone_choices() -> list[tuple[str, str]]:
    return [(name, name.replace("_", " ")) for name in sorted(zoneinfo.available_timezones()) if "/" in name]


class ProfileForm(forms.Form):
    name = forms.CharField(label="Clinic name", max_length=120)
    timezone = forms.ChoiceField(
        label="Time zone", choices=_timezone_choices, help_text="Dates on receipts and staff pages use it."
    )
    support_phone = forms.CharField(label="Support phone", max_length=32, required=False)
    support_email = forms.EmailField(label="Support email", max_length=254, required=False)
    address_line1 = forms.CharField(label="Address line 1", max_length=120, required=False)
    address_line2 = forms.CharField(label="Address line 2", max_length=120, required=False)
    city = forms.CharField(label="City", max_length=80, required=False)
    state = forms.CharField(label="State", max_length=40, required=False)
    postal_code = forms.CharField(label="Postal code", max_length=16, required=False)
    statement_number_hint = forms.CharField(
        label="Statement number example",
        max_length=40,
        required=False,
        help_text="Shown on the look-up form as an example, such as DC-100234. Leave blank to show none.",
    )


class BrandingForm(forms.Form):
    brand_colour = forms.CharField(
        label="Brand colour",
        max_length=7,
        help_text="# and six hex digits. Buttons use it behind white text, so it must reach a 4.5:1 contrast.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    logo = forms.FileField(
        label="Logo",
        required=False,
        help_text=f"PNG or JPEG, at most {LOGO_MAX_BYTES // 1024} kB and 2000 pixels a side. "
        "It is re-encoded: metadata is removed.",
        widget=forms.ClearableFileInput(attrs={"accept": "image/png,image/jpeg"}),
    )
    remove_logo = forms.BooleanField(label="Remove the current logo", required=False)

    def clean_logo(self) -> bytes | None:
        upload = self.cleaned_data.get("logo")
        if not upload:
            return None
        if upload.size is not None and upload.size > LOGO_MAX_BYTES:
            raise forms.ValidationError(
                f"The logo is {upload.size // 1024} kB; the limit is {LOGO_MAX_BYTES // 1024} kB."
            )
        data: bytes = upload.read(LOGO_MAX_BYTES + 1)
        return data


class ProcessorKeysForm(forms.Form):
    publishable_key = forms.CharField(
        label="Publishable key",
        max_length=255,
        help_text="Starts with pk_test_ (or pk_live_ in production).",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    secret_key = forms.CharField(
        label="Secret key",
        max_length=255,
        strip=True,
        help_text="Starts with sk_test_, or rk_test_ for a restricted key. Stored encrypted; never shown again.",
        widget=forms.PasswordInput(attrs={"autocomplete": "off"}),
    )


class WebhookSecretForm(forms.Form):
    webhook_secret = forms.CharField(
        label="Signing secret",
        max_length=255,
        help_text="Starts with whsec_. Stored encrypted; never shown again.",
        widget=forms.PasswordInput(attrs={"autocomplete": "off"}),
    )


def _bounded(label: str, bounds: tuple[int, int], help_text: str) -> forms.IntegerField:
    return forms.IntegerField(
        label=label, min_value=bounds[0], max_value=bounds[1], help_text=f"{help_text} ({bounds[0]} to {bounds[1]})"
    )


class PoliciesForm(forms.Form):
    minimum_payment = forms.CharField(
        label="Minimum payment", max_length=16, help_text="The smallest amount a patient may pay, unless they owe less."
    )
    card_check_policy = forms.ChoiceField(
        label="When the CVC or postal-code check fails",
        choices=CardCheckPolicy.choices,
        widget=forms.RadioSelect,
    )
    lookup_statement_failure_limit = _bounded(
        "Failed look-ups per statement before it locks", LOOKUP_STATEMENT_FAILURES, "Wrong dates of birth"
    )
    lookup_lockout_minutes = _bounded("Lockout length in minutes", LOOKUP_LOCKOUT_MINUTES, "Minutes")
    lookup_ip_failure_limit = _bounded(
        "Failed look-ups per network address before it locks", LOOKUP_IP_FAILURES, "Across all statements"
    )

    def __init__(self, *args: Any, tenant: Tenant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tenant = tenant

    def clean_minimum_payment(self) -> int:
        try:
            amount = Money.parse(self.cleaned_data["minimum_payment"], self.tenant.currency)
        except MoneyParseError as exc:
            raise forms.ValidationError(str(exc)) from None
        if not 0 < amount.minor_units <= MINIMUM_PAYMENT_MAX_MINOR:
            most = Money(MINIMUM_PAYMENT_MAX_MINOR, self.tenant.currency)
            raise forms.ValidationError(f"Enter an amount above zero and at most {most}.")
        return amount.minor_units
