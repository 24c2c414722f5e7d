"""The configuration the card form script (static/billing/checkout.js) reads, for every page that has one.

The patient's pay page and the staff phone payment page run the same script;
only where it posts differs. One builder keeps the two from drifting apart.
"""

from __future__ import annotations

from typing import Any

from billing.services.checkout import CardSetup
from portal.money import CURRENCY_EXPONENTS, CURRENCY_SYMBOLS, Money


def card_form_config(*, setup: CardSetup, payable: Money, submit_url: str, renew_url: str) -> dict[str, Any]:
    return {
        "publishableKey": setup.publishable_key,
        "clientSecret": setup.client_secret,
        "setupIntentId": setup.setup_intent_id,
        "submitUrl": submit_url,
        "renewUrl": renew_url,
        "fullAmount": payable.input_value(),
        "currencySymbol": CURRENCY_SYMBOLS[payable.currency].strip(),
        # How money is shown (portal.money.Money.__str__): prefix as printed, decimals.
        "currencyPrefix": CURRENCY_SYMBOLS[payable.currency],
        "currencyExponent": CURRENCY_EXPONENTS[payable.currency],
    }
