"""Filters for the console's search and for export requests. References only."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from uuid import UUID

from django import forms

from audit import conf
from audit.actions import ACTIONS, action_label
from audit.models import Outcome
from audit.periods import TIME_ZONE_NAME, day_bounds, today
from audit.selectors import EventFilters, members_of
from portal.models import Tenant

EARLIEST = date(2000, 1, 1)
LATEST = date(2100, 1, 1)


class _RangeForm(forms.Form):
    # Days in the audit time zone, both included (audit.periods): "To" is the whole of that day.
    date_from = forms.DateField(
        label=f"From (first day, {TIME_ZONE_NAME})", widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        label=f"To (last day, {TIME_ZONE_NAME}, included)", widget=forms.DateInput(attrs={"type": "date"})
    )
    actor = forms.ChoiceField(label="Person", required=False)
    action = forms.ChoiceField(label="Action", required=False)
    outcome = forms.ChoiceField(label="Outcome", required=False, choices=[("", "Any outcome"), *Outcome.choices])
    patient = forms.UUIDField(label="Patient id", required=False, help_text="The patient's public id")
    target_type = forms.RegexField(
        label="Target type",
        required=False,
        regex=r"^[a-z_]{1,64}$",
        error_messages={"invalid": "Use a type such as patient or payment."},
    )

    max_days = 400

    def __init__(self, *args: Any, tenant: Tenant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        actor_field = self.fields["actor"]
        assert isinstance(actor_field, forms.ChoiceField)
        actor_field.choices = [("", "Anyone")] + [
            (str(m.user.public_id), f"{m.user.email} ({m.get_role_display()})") for m in members_of(tenant=tenant)
        ]
        action_field = self.fields["action"]
        assert isinstance(action_field, forms.ChoiceField)
        # Labels, in code order so each area's actions stay together.
        action_field.choices = [("", "Any action"), *((a, action_label(a)) for a in sorted(ACTIONS))]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("date_from"), data.get("date_to")
        for name, value in (("date_from", start), ("date_to", end)):
            if value is not None and not (EARLIEST <= value < LATEST):
                self.add_error(name, f"Choose a date between {EARLIEST:%Y} and {LATEST:%Y}.")
        if start and end and EARLIEST <= start and end < LATEST:
            if end < start:
                self.add_error("date_to", "The last day must not be before the first.")
            elif (end - start).days + 1 > self.max_days:
                self.add_error("date_to", f"Choose at most {self.max_days} days; split a longer period.")
        return data

    def filters(self) -> EventFilters:
        data = self.cleaned_data
        start, end = day_bounds(first=data["date_from"], last=data["date_to"])
        return EventFilters(
            date_from=start,
            date_to=end,
            actor=UUID(data["actor"]) if data.get("actor") else None,
            action=data.get("action") or "",
            outcome=data.get("outcome") or "",
            patient=data.get("patient"),
            target_type=data.get("target_type") or "",
        )


class SearchForm(_RangeForm):
    """The console search: the hot table, at most the hot period at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_days = conf.hot_days()


class ExportForm(_RangeForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_days = conf.export_max_days()


def default_range() -> dict[str, str]:
    last = today()
    return {"date_from": (last - timedelta(days=30)).isoformat(), "date_to": last.isoformat()}
