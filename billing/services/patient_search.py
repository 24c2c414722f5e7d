"""Finding a clinic's patients when every identifying field is encrypted.

Patient names, dates of birth, account numbers, emails and phones are sealed
at rest (security.crypto), so the database cannot compare or sort them. What
it can do is match keyed blind indexes exactly, after the same normalisation
the index was written with (case, spaces, date and phone formats). A search
therefore reads what the person typed, decides which indexes it could be
(an email, a phone number, an account or statement number, a last or first
name; a date of birth, alone or with a name), and asks the database for rows
whose index equals any of them. That is an indexed equality look-up: as fast
as a plaintext search by the same key.

A date of birth alone is not selective (a clinic has many patients born on
one day), so it lists at most MAX_DATE_OF_BIRTH_MATCHES and says when more
matched.

What it cannot do, by design: partial matches ("Lov" for "Lovelace") and
ordering the whole table by name. Browsing lists patients newest first; the
rows of one search (few: an exact key) are ordered by name after decryption
of their listing projection (Patient.listing: one ciphertext per row holding
the columns lists show, instead of one per column).

The search text never leaves this module: audit details name which kinds of
key were tried (`kinds`), never the text.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from django.db.models import Q, QuerySet

from billing.models import Patient, Statement
from portal.models import Tenant
from security.crypto.fields import blind_index_filter
from security.crypto.normalize import normalize_phone

# A search is an exact key, so it matches few rows; more than this many means
# the key is not selective (a very common last name) and the person should
# add a date of birth.
MAX_SEARCH_MATCHES = 500
# A date of birth alone: a short list to pick from, or a prompt to add a name.
MAX_DATE_OF_BIRTH_MATCHES = 50
_PHONE_CHARACTERS = re.compile(r"[\d\s()+.\-]+")
_MIN_PHONE_DIGITS = 7


# What each kind of key is called on the page ("Searched by ...").
KIND_LABELS = {
    "email": "email",
    "phone": "phone",
    "account": "account number",
    "statement": "statement number",
    "name": "last name",
    "name_dob": "last name and date of birth",
    "first_name": "first name",
    "first_name_dob": "first name and date of birth",
    "date_of_birth": "date of birth",
}


@dataclass(frozen=True)
class PatientSearch:
    """The patients matching one search, ordered by name, and how they were found."""

    patients: list[Patient]
    kinds: tuple[str, ...]  # which keys were tried (KIND_LABELS)
    truncated: bool  # more than `limit` matched; only the first are listed
    limit: int = MAX_SEARCH_MATCHES

    @property
    def kind_labels(self) -> list[str]:
        return [KIND_LABELS[kind] for kind in self.kinds]

    @property
    def kinds_text(self) -> str:
        """The kinds tried, for a sentence: "account number, statement number or last name"."""
        labels = self.kind_labels
        return labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} or {labels[-1]}"

    @property
    def by_date_of_birth_only(self) -> bool:
        return self.kinds == ("date_of_birth",)


# What a patient list page reads of each row: its ids (links, audit), the order
# and the listing projection. The other columns (six ciphertexts, five blind
# indexes) are not loaded: a list reads one ciphertext per row, not seven.
LIST_COLUMNS = ("id", "tenant_id", "public_id", "created_at", "listing")


def patients_newest_first(*, tenant: Tenant) -> QuerySet[Patient]:
    """Every patient of the clinic, newest first (browsing; paginate it), with the list columns only.

    Read `patient.listing` for what the list shows; any other field is loaded
    by a query of its own.
    """
    return _list_rows(tenant).order_by("-created_at", "-pk")


def _list_rows(tenant: Tenant) -> QuerySet[Patient]:
    return Patient.objects.filter(tenant=tenant).only(*LIST_COLUMNS)


def _looks_like_phone(text: str) -> bool:
    return bool(_PHONE_CHARACTERS.fullmatch(text)) and len(normalize_phone(text)) >= _MIN_PHONE_DIGITS


def _name_candidates(text: str) -> list[str]:
    """Last names the text could name: all of it ("van Dyke"), or its last word ("Ada Lovelace")."""
    words = text.split()
    candidates = [" ".join(words)]
    if len(words) > 1:
        candidates.append(words[-1])
    return candidates


def _first_name_filter(text: str) -> str:
    """The first-name part of "Ada Lovelace" (case-folded), or "" for a single word."""
    words = text.split()
    return " ".join(words[:-1]).casefold() if len(words) > 1 else ""


def _by_name(patient: Patient) -> tuple[str, str, int]:
    # The listing projection: one decryption per row for the filters, the sort and the page.
    listing = patient.listing
    return (listing.last_name.casefold(), listing.first_name.casefold(), patient.pk)


def _matching(tenant: Tenant, condition: Q, limit: int = MAX_SEARCH_MATCHES) -> list[Patient]:
    # The list columns only, as for browsing: the filters, the sort and the page read the listing.
    return list(_list_rows(tenant).filter(condition).order_by("pk")[: limit + 1])


def _index(tenant: Tenant, field_name: str, alternatives: list[tuple[object, ...]]) -> Q:
    """Rows whose `field_name` index equals any alternative (one value per source of the index)."""
    condition = Q(pk__in=[])
    for values in alternatives:
        condition |= blind_index_filter(tenant_id=tenant.pk, model=Patient, field_name=field_name, values=values)
    return condition


def _statement_number(tenant: Tenant, text: str) -> Q:
    """Patients with a statement whose number (Statement.number_index) equals the text."""
    statements = Statement.objects.filter(
        blind_index_filter(tenant_id=tenant.pk, model=Statement, field_name="number_index", values=[text])
    )
    return Q(pk__in=statements.values("patient_id"))


def _by_date_of_birth(tenant: Tenant, date_of_birth: datetime.date) -> PatientSearch:
    found = _matching(tenant, _index(tenant, "date_of_birth_index", [(date_of_birth,)]), MAX_DATE_OF_BIRTH_MATCHES)
    truncated = len(found) > MAX_DATE_OF_BIRTH_MATCHES
    found = found[:MAX_DATE_OF_BIRTH_MATCHES]
    found.sort(key=_by_name)
    return PatientSearch(patients=found, kinds=("date_of_birth",), truncated=truncated, limit=MAX_DATE_OF_BIRTH_MATCHES)


def patient_search(*, tenant: Tenant, text: str, date_of_birth: datetime.date | None) -> PatientSearch:
    """Patients of `tenant` whose email, phone, account number, statement number, last or first name equals `text`.

    `text` and `date_of_birth` must not both be empty (the form checks).
    With `date_of_birth`, names are matched on the name + date of birth
    indexes and every other kind of match must also have that date of birth;
    without `text`, the date of birth alone lists at most
    MAX_DATE_OF_BIRTH_MATCHES patients. "Ada Lovelace" finds last name
    "Lovelace" with a first name starting "Ada" (and a last or first name
    that is "Ada Lovelace" as a whole).
    """
    text = " ".join(text.split())
    if not text:
        if date_of_birth is None:
            raise ValueError("a patient search needs a text or a date of birth")
        return _by_date_of_birth(tenant, date_of_birth)
    kinds: list[str] = []
    keys = Q(pk__in=[])
    if "@" in text:
        keys |= _index(tenant, "email_index", [(text,)])
        kinds.append("email")
    if _looks_like_phone(text):
        keys |= _index(tenant, "phone_index", [(text,)])
        kinds.append("phone")
    keys |= _index(tenant, "account_number_index", [(text,)])
    kinds.append("account")
    keys |= _statement_number(tenant, text)
    kinds.append("statement")
    found = _matching(tenant, keys)

    if any(character.isalpha() for character in text):
        names = _name_candidates(text)
        if date_of_birth is not None:
            by_name = _matching(tenant, _index(tenant, "name_dob_index", [(name, date_of_birth) for name in names]))
            by_first_name = _matching(tenant, _index(tenant, "first_name_dob_index", [(text, date_of_birth)]))
            kinds += ["name_dob", "first_name_dob"]
        else:
            by_name = _matching(tenant, _index(tenant, "last_name_index", [(name,) for name in names]))
            by_first_name = _matching(tenant, _index(tenant, "first_name_index", [(text,)]))
            kinds += ["name", "first_name"]
        first_name = _first_name_filter(text)
        if first_name:
            whole = text.casefold()
            by_name = [
                patient
                for patient in by_name
                if patient.listing.first_name.casefold().startswith(first_name)
                or patient.listing.last_name.casefold() == whole
            ]
        known = {patient.pk for patient in found}
        for patient in by_name + by_first_name:
            if patient.pk not in known:
                known.add(patient.pk)
                found.append(patient)

    truncated = len(found) > MAX_SEARCH_MATCHES
    if date_of_birth is not None:
        found = [patient for patient in found if patient.listing.date_of_birth == date_of_birth]
    found.sort(key=_by_name)
    return PatientSearch(patients=found[:MAX_SEARCH_MATCHES], kinds=tuple(kinds), truncated=truncated)
