"""Money as integer minor units plus an ISO 4217 currency. Never floats."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

# Minor-unit exponents of the currencies a clinic may bill in. Stripe uses the
# same exponents for these currencies.
CURRENCY_EXPONENTS: dict[str, int] = {
    "USD": 2,
    "CAD": 2,
    "EUR": 2,
    "GBP": 2,
    "AUD": 2,
    "NZD": 2,
    "CHF": 2,
    "JPY": 0,
}
CURRENCY_SYMBOLS: dict[str, str] = {
    "USD": "$",
    "CAD": "CA$",
    "EUR": "€",
    "GBP": "£",
    "AUD": "A$",
    "NZD": "NZ$",
    "CHF": "CHF ",
    "JPY": "¥",
}
CURRENCY_CHOICES = [(code, code) for code in CURRENCY_EXPONENTS]


class MoneyParseError(ValueError):
    """A user-entered amount is not a valid amount in the currency."""


@dataclass(frozen=True, order=True)
class Money:
    # Invariant: minor_units is an int; currency is a key of CURRENCY_EXPONENTS.
    minor_units: int
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.minor_units, int) or isinstance(self.minor_units, bool):
            raise TypeError("Money.minor_units must be an int")
        if self.currency not in CURRENCY_EXPONENTS:
            raise ValueError(f"unsupported currency {self.currency!r}")

    @classmethod
    def parse(cls, text: str, currency: str) -> Money:
        """Parse what a person typed ("25", "25.5", "1,250.00") into Money.

        Refuses more decimal places than the currency has, signs, exponents
        and anything that is not a plain number.
        """
        cleaned = (text or "").strip().replace(",", "")
        symbol = CURRENCY_SYMBOLS.get(currency, "").strip()
        if symbol and cleaned.startswith(symbol):
            cleaned = cleaned[len(symbol) :].strip()
        # ASCII digits only: str.isdigit() would also accept other scripts' digits.
        if not cleaned or not all(ch in "0123456789." for ch in cleaned) or cleaned.count(".") > 1:
            raise MoneyParseError("Enter an amount such as 25.00.")
        exponent = CURRENCY_EXPONENTS[currency]
        try:
            minor = Decimal(cleaned).scaleb(exponent)
        except InvalidOperation:
            raise MoneyParseError("Enter an amount such as 25.00.") from None
        if minor != minor.to_integral_value():
            raise MoneyParseError(
                f"Enter an amount with at most {exponent} decimal places." if exponent else "Enter a whole amount."
            )
        if minor > 10**12:
            raise MoneyParseError("That amount is too large.")
        return cls(int(minor), currency)

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.minor_units + other.minor_units, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.minor_units - other.minor_units, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.minor_units, self.currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"cannot combine {self.currency} and {other.currency}")

    @property
    def decimal(self) -> Decimal:
        return Decimal(self.minor_units).scaleb(-CURRENCY_EXPONENTS[self.currency])

    def input_value(self) -> str:
        """The amount as a plain number for a form field ("1250.00")."""
        exponent = CURRENCY_EXPONENTS[self.currency]
        return f"{self.decimal:.{exponent}f}"

    def __str__(self) -> str:
        exponent = CURRENCY_EXPONENTS[self.currency]
        sign = "-" if self.minor_units < 0 else ""
        amount = abs(self.decimal)
        return f"{sign}{CURRENCY_SYMBOLS[self.currency]}{amount:,.{exponent}f}"
