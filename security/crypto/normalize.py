"""Normalisers for blind indexes: equal for everything a person would call equal.

Each takes what a person typed (or a stored value) and returns a canonical
string; None or "" means "nothing to index". They are deliberately
conservative: a normaliser that merged two different values would make a
look-up find the wrong record.
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from collections.abc import Callable
from typing import Any

_SPACES = re.compile(r"\s+")
_NOT_DIGITS = re.compile(r"\D")


def normalize_text(value: Any) -> str:
    """Names and free text: Unicode NFKC, case-folded, inner whitespace collapsed, trimmed."""
    if value is None:
        return ""
    text = unicodedata.normalize("NFKC", str(value))
    return _SPACES.sub(" ", text).strip().casefold()


def normalize_exact(value: Any) -> str:
    """Identifiers compared as typed (account numbers): trimmed only."""
    return "" if value is None else str(value).strip()


def normalize_email(value: Any) -> str:
    """Emails: trimmed and lower-cased (the local part is case-insensitive in practice)."""
    if value is None:
        return ""
    return unicodedata.normalize("NFKC", str(value)).strip().lower()


def normalize_phone(value: Any, *, default_country_code: str = "1") -> str:
    """Phones as E.164 digits: '+1 (202) 555-0143', '202.555.0143' and '12025550143' all
    become '12025550143'. Ten digits are taken as a North American number;
    a leading 00 or + marks an international number; extensions are kept.
    """
    if value is None:
        return ""
    text = str(value).strip().lower()
    extension = ""
    match = re.search(r"(?:ext\.?|x|#)\s*(\d+)$", text)
    if match:
        extension = "x" + match.group(1)
        text = text[: match.start()]
    international = text.startswith(("+", "00"))
    digits = _NOT_DIGITS.sub("", text)
    if text.startswith("00"):
        digits = digits[2:]
    if not digits:
        return ""
    if not international and len(digits) == 10:
        digits = default_country_code + digits
    return digits + extension


_DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%Y%m%d",
    "%m/%d/%Y",  # US order: the portal's patients are in the US
    "%m-%d-%Y",
    "%m.%d.%Y",
    "%d %b %Y",
    "%d %B %Y",
    "%b %d %Y",
    "%B %d %Y",
)


def normalize_date(value: Any) -> str:
    """Dates as ISO 8601 (YYYY-MM-DD) from a date or the common typed forms
    (2/29/1984, 02-29-1984, 19840229, 29 Feb 1984, February 29, 1984).
    Raises ValueError for text that is not a date.
    """
    if value is None or value == "":
        return ""
    if isinstance(value, datetime.datetime):
        return value.date().isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat()
    text = _SPACES.sub(" ", str(value).replace(",", " ")).strip()
    for fmt in _DATE_FORMATS:
        try:
            return datetime.datetime.strptime(text, fmt).date().isoformat()  # noqa: DTZ007 - a date, no zone
        except ValueError:
            continue
    raise ValueError(f"not a recognised date: {len(text)} characters")


_NOT_STATEMENT_CHARS = re.compile(r"[\s\-_/.]")


def normalize_statement_number(value: Any) -> str:
    """Statement numbers for look-ups: upper case without spaces, dashes, underscores,
    slashes or dots ('st-1004 2' -> 'ST10042').

    It lives here, below billing, because the blind index of Statement.number is
    computed with it; billing.services.statements re-exports it for the look-up.
    """
    return _NOT_STATEMENT_CHARS.sub("", "" if value is None else str(value)).upper()


NORMALIZERS: dict[str, Callable[[Any], str]] = {
    "text": normalize_text,
    "exact": normalize_exact,
    "email": normalize_email,
    "phone": normalize_phone,
    "date": normalize_date,
    "statement_number": normalize_statement_number,
}


def normalizer(name: str) -> Callable[[Any], str]:
    try:
        return NORMALIZERS[name]
    except KeyError:
        raise ValueError(f"unknown normaliser {name!r} (one of {', '.join(sorted(NORMALIZERS))})") from None
