"""Forms of the platform console (shape only; security.clinics holds the rules)."""

from __future__ import annotations

import zoneinfo
from functools import cache

from django import forms

from portal.money import CURRENCY_CHOICES
from security.clinics import SUSPENSION_REASON_MAX


@cache
def timezone_choices() -> list[tuple[str, str]]:
    zones = sorted(zone for zone in zoneinfo.available_timezones() if "/" in zone and not zone.startswith("Etc/"))
    return [(zone, zone.replace("_", " ")) for zone in zones]


class ClinicProfileForm(forms.Form):
    name = forms.CharField(label="Clinic name", max_length=120, required=False)
    timezone = forms.ChoiceField(
        label="Time zone",
        initial="America/New_York",
        help_text="Dates and times on the clinic's pages, and quiet hours for texts, use it.",
    )
    support_phone = forms.CharField(
        label="Support phone", max_length=32, required=False, help_text="Shown to patients with questions about a bill."
    )
    support_email = forms.EmailField(label="Support email", max_length=254, required=False)
    custom_domain = forms.CharField(
        label="Custom domain (optional)",
        max_length=253,
        required=False,
        help_text="Such as pay.lakeside-pediatrics.example. Served only after its DNS record is verified.",
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["timezone"].choices = timezone_choices()  # type: ignore[attr-defined]
        self.fields["custom_domain"].widget.attrs.update(autocapitalize="off", spellcheck="false")
        self.fields["support_phone"].widget.attrs["autocomplete"] = "off"


class ClinicCreateForm(ClinicProfileForm):
    slug = forms.CharField(
        label="Address (slug)",
        max_length=40,
        required=False,
        help_text="The clinic's own address: <slug>.<platform domain>. 3-40 lowercase letters, digits or hyphens. "
        "Cannot be changed later.",
    )
    currency = forms.ChoiceField(
        label="Currency", choices=CURRENCY_CHOICES, initial="USD", help_text="Balances are kept in it; set once."
    )
    admin_email = forms.EmailField(
        label="First clinic admin's email (optional)",
        max_length=254,
        required=False,
        help_text="They get an invitation link, valid 72 hours, to set a password and an authenticator.",
    )
    field_order = ["name", "slug", "timezone", "currency", "support_phone", "support_email", "custom_domain"]

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["slug"].widget.attrs.update(autocapitalize="off", spellcheck="false")


class AdminInviteForm(forms.Form):
    admin_email = forms.EmailField(label="Clinic admin's email", max_length=254)


class SuspendForm(forms.Form):
    reason = forms.CharField(
        label="Reason (for operators; never shown to patients)",
        max_length=SUSPENSION_REASON_MAX,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
