"""Settings → Approvals: the form and the section's values (views in portal.views.clinic_settings)."""

from __future__ import annotations

from typing import Any

from django import forms

from billing.services.approval_limits import LIMIT_FIELDS, LIMIT_MAX_MINOR, approval_limits
from portal.models import Tenant
from portal.money import Money, MoneyParseError

LIMIT_LABELS: dict[str, str] = {
    "front_desk_limit_minor": "Front desk",
    "billing_manager_limit_minor": "Billing managers",
    "clinic_admin_limit_minor": "Clinic admins",
    "front_desk_adjustment_limit_minor": "Front desk",
    "billing_manager_adjustment_limit_minor": "Billing managers",
    "clinic_admin_adjustment_limit_minor": "Clinic admins",
}


class ApprovalLimitsForm(forms.Form):
    """Each role's limit as money in the clinic's currency; 0 means every request waits for approval."""

    def __init__(self, *args: Any, tenant: Tenant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tenant = tenant
        for name in LIMIT_FIELDS:
            self.fields[name] = forms.CharField(label=LIMIT_LABELS[name], max_length=16)

    def _limit(self, name: str) -> int:
        try:
            amount = Money.parse(self.cleaned_data[name], self.tenant.currency)
        except MoneyParseError as exc:
            raise forms.ValidationError(str(exc)) from None
        if not 0 <= amount.minor_units <= LIMIT_MAX_MINOR:
            raise forms.ValidationError(f"Enter an amount from 0 to {Money(LIMIT_MAX_MINOR, self.tenant.currency)}.")
        return amount.minor_units

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for name in LIMIT_FIELDS:
            if name in cleaned:
                try:
                    cleaned[name] = self._limit(name)
                except forms.ValidationError as error:
                    self.add_error(name, error)
        return cleaned

    def refund_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in LIMIT_FIELDS[:3]]

    def adjustment_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in LIMIT_FIELDS[3:]]


def approvals_context(tenant: Tenant) -> dict[str, Any]:
    limits = approval_limits(tenant=tenant)
    shown = {name: Money(value, tenant.currency) for name, value in limits.items()}
    initial = {name: money.input_value() for name, money in shown.items()}
    return {
        "limits": shown,
        "refund_limits": [(LIMIT_LABELS[n], shown[n]) for n in LIMIT_FIELDS[:3]],
        "adjustment_limits": [(LIMIT_LABELS[n], shown[n]) for n in LIMIT_FIELDS[3:]],
        "approvals_form": ApprovalLimitsForm(initial=initial, tenant=tenant),
    }
