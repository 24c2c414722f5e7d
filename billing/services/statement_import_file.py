"""Statement import files: refusing a bad file whole, and checking each row.

A file is refused whole (nothing applied) when it is too large, empty, not
UTF-8, not CSV, or lacks a required column: `import_file_open` raises
ImportRefused with a message naming the problem. Otherwise each row is
checked on its own by `import_row_parse`, which gives either the row's
values or every reason it is rejected. Reasons never repeat the row's
values (they are shown in the console and may be logged); the rejected-rows
report carries the values beside them for staff to correct.

The format is documented in docs/statement-import.md.
"""

from __future__ import annotations

import codecs
import csv
import datetime
import re
from collections.abc import Iterator
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from billing.services.statements import normalize_statement_number
from portal.money import Money, MoneyParseError

MAX_IMPORT_BYTES = 20 * 1024 * 1024

REQUIRED_COLUMNS: tuple[str, ...] = (
    "statement_number",
    "account_number",
    "first_name",
    "last_name",
    "date_of_birth",
    "statement_date",
    "due_date",
    "amount_due",
)
# Optional columns the patient and statement records keep.
STORED_OPTIONAL_COLUMNS: tuple[str, ...] = ("email", "phone", "service_summary")
# Optional columns of the format that the records have no field for yet: accepted in
# a file and reported as ignored (docs/statement-import.md).
NOT_STORED_COLUMNS: tuple[str, ...] = (
    "address_line1",
    "address_line2",
    "city",
    "state",
    "postal_code",
    "language",
)
KNOWN_COLUMNS = frozenset(REQUIRED_COLUMNS + STORED_OPTIONAL_COLUMNS + NOT_STORED_COLUMNS)

_MAX_LENGTHS = {
    "statement_number": 32,
    "account_number": 40,
    "first_name": 100,
    "last_name": 100,
    "email": 254,
    "phone": 32,
    "service_summary": 2000,
}
_PHONE = re.compile(r"^\+?[0-9 ().\-]{7,32}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Statement.amount_due_minor is a PositiveIntegerField.
_MAX_AMOUNT_MINOR = 2**31 - 1


class ImportRefused(Exception):
    """The file as a whole cannot be imported; `message` says why, for the person who sent it."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code  # short and fixed: goes in the audit event


@dataclass(frozen=True)
class ImportFile:
    """A file that passed the whole-file checks. `text` has no BOM."""

    text: str
    header: tuple[str, ...]
    ignored_columns: tuple[str, ...]
    rows_total: int


@dataclass(frozen=True)
class ImportRow:
    """One accepted row's values, typed."""

    line: int
    statement_number: str  # as printed (stripped, upper case)
    account_number: str
    first_name: str
    last_name: str
    date_of_birth: datetime.date
    statement_date: datetime.date
    due_date: datetime.date
    amount_due_minor: int
    email: str
    phone: str
    summary: str

    @property
    def statement_key(self) -> str:
        return normalize_statement_number(self.statement_number)


def _decode(data: bytes) -> str:
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ImportRefused(
            f"The file is not UTF-8 text (byte {error.start + 1} is not valid UTF-8). "
            "Save it as “CSV UTF-8” and upload it again.",
            code="not_utf8",
        ) from None
    if "\x00" in text:
        raise ImportRefused("The file is not a CSV file (it contains binary data).", code="not_csv")
    return text


def _lines(text: str) -> Iterator[str]:
    """The text's lines with their endings, one slice at a time.

    Not io.StringIO: it would copy the whole text into a buffer of four bytes
    a character, several times the file's size, for each pass.
    """
    start, end = 0, len(text)
    while start < end:
        stop = text.find("\n", start)
        stop = end if stop < 0 else stop + 1
        yield text[start:stop]
        start = stop


def import_rows(text: str) -> Iterator[tuple[int, list[str]]]:
    """(first line number, fields) of each data row after the header; blank lines skipped.

    Streams: one row at a time. Raises csv.Error on malformed CSV.
    """
    reader = csv.reader(_lines(text), strict=True)
    next(reader, None)
    line = reader.line_num + 1
    for fields in reader:
        if any(field.strip() for field in fields):
            yield line, fields
        line = reader.line_num + 1


def import_file_open(data: bytes) -> ImportFile:
    """Check a whole file; ImportRefused names the first problem found. Reads the file twice, streaming."""
    if len(data) > MAX_IMPORT_BYTES:
        raise ImportRefused(
            f"The file is {len(data) / 1024 / 1024:.1f} MB; the limit is {MAX_IMPORT_BYTES // 1024 // 1024} MB. "
            "Split it into smaller files.",
            code="too_large",
        )
    return import_text_open(_decode(data))


def import_text_open(text: str) -> ImportFile:
    """The checks of import_file_open after decoding (a job's stored upload is text)."""
    try:
        first = next(csv.reader(_lines(text), strict=True), None)
    except csv.Error:
        raise ImportRefused(
            "The file is not a CSV file: its first line cannot be read as CSV.", code="not_csv"
        ) from None
    if not first or not any(cell.strip() for cell in first):
        raise ImportRefused("The file is empty: the first line must name the columns.", code="empty")
    header = tuple(cell.strip().lower() for cell in first)
    if len(header) == 1 and header[0] not in KNOWN_COLUMNS:
        raise ImportRefused(
            "The file is not a CSV file of statements: its first line has no commas. "
            "The first line must name the columns, separated by commas.",
            code="not_csv",
        )
    duplicates = sorted({name for name in header if name and header.count(name) > 1})
    if duplicates:
        raise ImportRefused(f"These columns appear more than once: {', '.join(duplicates)}.", code="duplicate_column")
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise ImportRefused(f"Required columns are missing: {', '.join(missing)}.", code="missing_column")
    ignored = tuple(name for name in header if name not in KNOWN_COLUMNS or name in NOT_STORED_COLUMNS)
    rows_total = 0
    try:
        for _line, _fields in import_rows(text):
            rows_total += 1
    except csv.Error as error:
        raise ImportRefused(f"The file is not valid CSV after row {rows_total + 1}: {error}.", code="not_csv") from None
    if rows_total == 0:
        raise ImportRefused("The file has a header but no statements.", code="empty")
    return ImportFile(text=text, header=header, ignored_columns=ignored, rows_total=rows_total)


def _date(value: str, name: str, reasons: list[str]) -> datetime.date | None:
    if not value:
        reasons.append(f"{name} is missing")
        return None
    if not _DATE.match(value):
        reasons.append(f"{name} is not a date in YYYY-MM-DD form")
        return None
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        reasons.append(f"{name} is not a real date")
        return None


def _text(values: dict[str, str], name: str, reasons: list[str], *, required: bool) -> str:
    value = values.get(name, "")
    if required and not value:
        reasons.append(f"{name} is missing")
    elif len(value) > _MAX_LENGTHS[name]:
        reasons.append(f"{name} is longer than {_MAX_LENGTHS[name]} characters")
    return value


def _amount(value: str, currency: str, reasons: list[str]) -> int:
    if not value:
        reasons.append("amount_due is missing")
        return 0
    try:
        minor = Money.parse(value, currency).minor_units
    except MoneyParseError:
        reasons.append("amount_due is not an amount such as 186.40 (digits, at most one point, no sign)")
        return 0
    if minor <= 0:
        reasons.append("amount_due must be more than zero")
    elif minor > _MAX_AMOUNT_MINOR:
        reasons.append("amount_due is too large")
    return minor


def import_row_parse(
    *, line: int, fields: list[str], header: tuple[str, ...], currency: str, today: datetime.date
) -> ImportRow | list[str]:
    """The row's typed values, or every reason it is rejected."""
    if len(fields) != len(header):
        return [f"the row has {len(fields)} fields, the header {len(header)}"]
    values = {name: field.strip() for name, field in zip(header, fields, strict=True)}
    reasons: list[str] = []
    number = _text(values, "statement_number", reasons, required=True).upper()
    if number and not normalize_statement_number(number):
        reasons.append("statement_number has no letters or digits")
    account = _text(values, "account_number", reasons, required=True)
    first_name = _text(values, "first_name", reasons, required=True)
    last_name = _text(values, "last_name", reasons, required=True)
    birth = _date(values["date_of_birth"], "date_of_birth", reasons)
    if birth is not None and not (datetime.date(1900, 1, 1) <= birth <= today):
        reasons.append("date_of_birth is in the future or before 1900")
    issued = _date(values["statement_date"], "statement_date", reasons)
    due = _date(values["due_date"], "due_date", reasons)
    if issued is not None and due is not None and due < issued:
        reasons.append("due_date is before statement_date")
    amount = _amount(values["amount_due"], currency, reasons)
    email = _text(values, "email", reasons, required=False)
    if email:
        try:
            validate_email(email)
        except ValidationError:
            reasons.append("email is not an email address")
    phone = _text(values, "phone", reasons, required=False)
    if phone and not _PHONE.match(phone):
        reasons.append("phone is not a phone number (digits, spaces, + ( ) . -)")
    summary = _text(values, "service_summary", reasons, required=False)
    if reasons:
        return reasons
    assert birth is not None and issued is not None and due is not None  # noqa: S101  # nosec B101
    return ImportRow(
        line=line,
        statement_number=number,
        account_number=account,
        first_name=first_name,
        last_name=last_name,
        date_of_birth=birth,
        statement_date=issued,
        due_date=due,
        amount_due_minor=amount,
        email=email,
        phone=phone,
        summary=summary,
    )
