"""Find card numbers in text: Luhn-valid runs of 13 to 19 digits.

Used by tests (and operators: `manage.py scan_card_numbers`) to prove that no
primary account number reaches the database, the logs or task results.
Digits may be separated by single spaces or dashes, as people type them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

_CANDIDATE = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
# UUIDs (8-4-4-4-12 hex) are our public ids everywhere; an all-digit stretch of
# one can look like a dashed card number, so they are blanked before scanning.
_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def find_card_numbers(text: str) -> Iterator[str]:
    """Yield each Luhn-valid 13-19 digit run, masked to its last four digits."""
    text = _UUID.sub(lambda m: "#" * len(m.group()), text)
    for match in _CANDIDATE.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits) and len(set(digits)) > 1:
            yield f"{'*' * (len(digits) - 4)}{digits[-4:]}"


def scan(chunks: Iterable[str]) -> list[str]:
    found: list[str] = []
    for chunk in chunks:
        found.extend(find_card_numbers(chunk))
    return found
