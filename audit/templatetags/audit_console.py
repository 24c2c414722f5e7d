"""Display helpers for the audit console's templates.

`audit_time` shows a time in the audit time zone (UTC, audit.periods) whatever
zone the request activated: the clinic's pages run under the clinic's zone,
and Django's `date` filter would convert to it. `action_label` shows an
action's human label from the registry (audit.actions).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template
from django.utils import dateformat

from audit.actions import action_label as _action_label
from audit.periods import TIME_ZONE, Period

register = template.Library()


@register.filter(expects_localtime=False)
def audit_time(value: Any, fmt: str = "Y-m-d H:i:s") -> str:
    if not isinstance(value, datetime) or value.tzinfo is None:
        return ""
    return dateformat.format(value.astimezone(TIME_ZONE), fmt)


@register.filter
def action_label(value: Any) -> str:
    return _action_label(str(value))


@register.simple_tag
def audit_period(start: datetime, end: datetime) -> str:
    """A stored range as people read it: `2026-11-02 to 2026-12-02 (UTC, both days included)`."""
    return Period(start, end).label()
