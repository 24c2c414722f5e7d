"""The card-number scanner: finds what a leak would look like, not our ids."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from security.cardscan import find_card_numbers, luhn_valid


def test_finds_card_numbers_as_people_write_them():
    text = "a 4242424242424242 b 4242 4242 4242 4242 c 4000-0000-0000-0002 d 378282246310005"
    assert list(find_card_numbers(text)) == [
        "************4242",
        "************4242",
        "************0002",
        "***********0005",
    ]


def test_ignores_non_luhn_runs_repeated_digits_and_short_numbers():
    assert list(find_card_numbers("4242424242424241 0000000000000000 424242424242 1795433105")) == []


def test_luhn():
    assert luhn_valid("4242424242424242") and not luhn_valid("4242424242424243")


@settings(max_examples=2000)
@given(st.uuids())
def test_uuids_are_never_mistaken_for_card_numbers(value: uuid.UUID):
    assert list(find_card_numbers(f"/pay/{value}/payments/{value}/")) == []


def test_a_card_number_next_to_a_uuid_is_still_found():
    text = f"{uuid.uuid4()} 4111111111111111"
    assert list(find_card_numbers(text)) == ["************1111"]
