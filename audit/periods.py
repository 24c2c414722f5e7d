"""The audit trail's calendar: one time zone and one meaning of a date range.

Everything the audit console shows or accepts, the export files and
`manage.py export_audit` are in UTC: the chain's own times are UTC
(`audit.chain.format_time`), a clinic's zone shifts twice a year and differs
between clinics, and auditors compare our files with other systems' logs,
which are kept in UTC. The rest of the staff console shows the clinic's zone
(the tenant middleware activates it), so audit templates format times with
the `audit_time` filter (audit/templatetags/audit_console.py), never with
Django's `date` filter, which would use the clinic's zone under a UTC label.

A range is given as a first and a last day, both included: "To 2026-12-02"
means up to the end of that day. It is stored and queried as the instants
[start, end), end excluded; `day_bounds` is the one conversion, and
`Period` turns stored instants back into the days people read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from audit.chain import format_time

TIME_ZONE = UTC
TIME_ZONE_NAME = "UTC"

_DAY = timedelta(days=1)
_TICK = timedelta(microseconds=1)  # the chain's time resolution


def day_bounds(*, first: date, last: date) -> tuple[datetime, datetime]:
    """[start, end) of the days `first` to `last`, both included, in UTC."""
    if last < first:
        raise ValueError("the last day must not be before the first")
    return datetime.combine(first, time.min, tzinfo=TIME_ZONE), datetime.combine(
        last + _DAY, time.min, tzinfo=TIME_ZONE
    )


@dataclass(frozen=True)
class Period:
    """A stored range of instants, [start, end), described as people read it."""

    start: datetime
    end: datetime  # excluded

    @property
    def first_day(self) -> date:
        return self.start.astimezone(TIME_ZONE).date()

    @property
    def last_day(self) -> date:
        """The last day with a moment inside the range (the day of `end` itself when it is midnight is not)."""
        return (self.end - _TICK).astimezone(TIME_ZONE).date()

    @property
    def whole_days(self) -> bool:
        """True when the range is exactly the days first_day..last_day (always so from the console and CLI)."""
        return (self.start, self.end) == day_bounds(first=self.first_day, last=max(self.first_day, self.last_day))

    def label(self) -> str:
        """`2026-11-02 to 2026-12-02 (UTC, both days included)`; exact times for a range made in code."""
        if not self.whole_days:
            return f"{_clock(self.start)} to {_clock(self.end)} {TIME_ZONE_NAME} (end excluded)"
        if self.first_day == self.last_day:
            return f"{self.first_day.isoformat()} ({TIME_ZONE_NAME}, the whole day)"
        return f"{self.first_day.isoformat()} to {self.last_day.isoformat()} ({TIME_ZONE_NAME}, both days included)"

    def header(self) -> dict[str, str]:
        """The range as an export file's header states it: the days, both included, and the exact instants."""
        return {
            "from": self.first_day.isoformat(),
            "to": self.last_day.isoformat(),
            "time_zone": TIME_ZONE_NAME,
            "starts_at": format_time(self.start),
            "ends_before": format_time(self.end),
        }


def _clock(value: datetime) -> str:
    return value.astimezone(TIME_ZONE).strftime("%Y-%m-%d %H:%M:%S")


def today() -> date:
    """Today's date in the audit time zone (the console's default range ends on it)."""
    return datetime.now(tz=TIME_ZONE).date()
