"""Money: integer minor units plus a currency; parsing what people type."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal.money import CURRENCY_EXPONENTS, Money, MoneyParseError

currencies = st.sampled_from(sorted(CURRENCY_EXPONENTS))
amounts = st.integers(min_value=0, max_value=10**12)


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("25", "USD", 2500),
        ("25.5", "USD", 2550),
        ("25.05", "USD", 2505),
        ("0.01", "USD", 1),
        ("1,250.00", "USD", 125000),
        ("  $12.34 ", "USD", 1234),
        ("€7", "EUR", 700),
        ("CA$3.10", "CAD", 310),
        ("1500", "JPY", 1500),
        ("¥1,500", "JPY", 1500),
        (".5", "USD", 50),
    ],
)
def test_parse_reads_what_people_type(text, currency, minor):
    assert Money.parse(text, currency) == Money(minor, currency)


@pytest.mark.parametrize(
    ("text", "currency"),
    [
        ("", "USD"),
        ("   ", "USD"),
        ("abc", "USD"),
        ("-5", "USD"),
        ("+5", "USD"),
        ("1e3", "USD"),
        ("12..3", "USD"),
        ("1.2.3", "USD"),
        ("NaN", "USD"),
        ("Infinity", "USD"),
        ("12.345", "USD"),
        ("0.001", "EUR"),
        ("12.5", "JPY"),
        ("10000000000.01", "USD"),  # above the ceiling
        ("£5", "USD"),  # another currency's symbol
    ],
)
def test_parse_refuses_anything_else(text, currency):
    with pytest.raises(MoneyParseError):
        Money.parse(text, currency)


def test_too_many_decimals_message_says_how_many_are_allowed():
    with pytest.raises(MoneyParseError, match="at most 2 decimal places"):
        Money.parse("1.999", "USD")
    with pytest.raises(MoneyParseError, match="whole amount"):
        Money.parse("1.5", "JPY")


@pytest.mark.parametrize("value", [1.5, 2.0, Decimal("1.50"), True, "150", None])
def test_money_holds_only_integer_minor_units(value):
    with pytest.raises(TypeError):
        Money(value, "USD")


@pytest.mark.parametrize("value", [12.5, 12.0])
def test_parse_never_accepts_a_float(value):
    with pytest.raises((TypeError, AttributeError, MoneyParseError)):
        Money.parse(value, "USD")


def test_unknown_currency_is_refused():
    with pytest.raises(ValueError, match="unsupported currency"):
        Money(100, "XYZ")


@pytest.mark.parametrize(
    ("money", "shown", "input_value"),
    [
        (Money(123456, "USD"), "$1,234.56", "1234.56"),
        (Money(-500, "USD"), "-$5.00", "-5.00"),
        (Money(7, "EUR"), "€0.07", "0.07"),
        (Money(1500, "JPY"), "¥1,500", "1500"),
        (Money(100000, "CHF"), "CHF 1,000.00", "1000.00"),
        (Money(0, "GBP"), "£0.00", "0.00"),
    ],
)
def test_formatting(money, shown, input_value):
    assert str(money) == shown
    assert money.input_value() == input_value


def test_arithmetic_keeps_the_currency_and_refuses_mixing():
    assert Money(500, "USD") + Money(250, "USD") == Money(750, "USD")
    assert Money(500, "USD") - Money(750, "USD") == Money(-250, "USD")
    assert -Money(5, "USD") == Money(-5, "USD")
    with pytest.raises(ValueError, match="cannot combine"):
        Money(500, "USD") + Money(500, "EUR")


# --- properties ---------------------------------------------------------------------------


@given(minor=amounts, currency=currencies)
def test_parse_of_input_value_round_trips(minor, currency):
    money = Money(minor, currency)
    assert Money.parse(money.input_value(), currency) == money


@given(minor=amounts, currency=currencies)
def test_parse_of_the_displayed_amount_round_trips(minor, currency):
    money = Money(minor, currency)
    assert Money.parse(str(money), currency) == money


@given(whole=st.integers(min_value=0, max_value=10**6), currency=currencies, data=st.data())
def test_one_decimal_too_many_is_refused(whole, currency, data):
    places = CURRENCY_EXPONENTS[currency] + 1
    digits = data.draw(st.text(alphabet="0123456789", min_size=places - 1, max_size=places - 1))
    last = data.draw(st.sampled_from("123456789"))  # a trailing non-zero digit really is one place too many
    with pytest.raises(MoneyParseError):
        Money.parse(f"{whole}.{digits}{last}", currency)


@given(value=st.floats(allow_nan=True, allow_infinity=True), currency=currencies)
def test_floats_are_never_money(value, currency):
    with pytest.raises(TypeError):
        Money(value, currency)


@given(text=st.text(max_size=30), currency=currencies)
def test_parse_either_returns_non_negative_money_or_refuses(text, currency):
    try:
        money = Money.parse(text, currency)
    except MoneyParseError:
        return
    assert isinstance(money.minor_units, int)
    assert 0 <= money.minor_units <= 10**12
    assert money.currency == currency
