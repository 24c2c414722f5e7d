"""Account-level Stripe calls for the clinic settings page.

Made with a secret key the admin has just typed, before it is saved: proving
the key works (retrieving the account's balance, which every working secret
key may read) and registering the clinic's webhook endpoint. Like
StripeProcessor, each call goes through a per-call client with that key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import stripe
from django.conf import settings

from billing.processor.base import (
    AccountCheck,
    EndpointApiUnavailable,
    EndpointSnapshot,
    ProcessorError,
    ProcessorKeyRefused,
    ProcessorUnavailable,
)
from billing.processor.stripe_processor import _as_dict


class StripeAdmin:
    def __init__(self, *, secret_key: str) -> None:
        base_addresses = {"api": settings.STRIPE_API_BASE} if settings.STRIPE_API_BASE else {}
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses=base_addresses,  # type: ignore[arg-type]
            http_client=stripe.new_default_http_client(timeout=settings.STRIPE_TIMEOUT_SECONDS),
            max_network_retries=1,
        )

    def check_account(self) -> AccountCheck:
        try:
            balance: Any = self._client.v1.balance.retrieve()
        except stripe.AuthenticationError:
            raise ProcessorKeyRefused("authentication") from None
        except stripe.PermissionError:
            raise ProcessorKeyRefused("permission") from None
        except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as exc:
            raise ProcessorUnavailable(type(exc).__name__) from None
        except stripe.StripeError as exc:
            raise ProcessorError(f"{type(exc).__name__}: {exc.code or exc.http_status}") from None
        return AccountCheck(livemode=bool(_as_dict(balance).get("livemode", False)))

    def create_webhook_endpoint(self, *, url: str, events: Sequence[str], description: str) -> EndpointSnapshot:
        try:
            endpoint: Any = self._client.v1.webhook_endpoints.create(
                params={"url": url, "enabled_events": list(events), "description": description}  # type: ignore[arg-type]
            )
        except stripe.PermissionError:
            # A restricted key without "Webhook Endpoints: write".
            raise EndpointApiUnavailable("permission") from None
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            raise ProcessorUnavailable(type(exc).__name__) from None
        except stripe.StripeError as exc:
            if exc.http_status == 404:
                # The API has no such route (localstripe).
                raise EndpointApiUnavailable("not implemented") from None
            if isinstance(exc, stripe.APIError):
                raise ProcessorUnavailable(f"processor error {exc.http_status}") from None
            raise ProcessorError(f"{type(exc).__name__}: {exc.code or exc.http_status}") from None
        data = _as_dict(endpoint)
        secret = str(data.get("secret") or "")
        if not secret:
            raise EndpointApiUnavailable("no signing secret returned")
        return EndpointSnapshot(id=str(data["id"]), url=str(data.get("url") or url), secret=secret)

    def delete_webhook_endpoint(self, endpoint_id: str) -> None:
        try:
            self._client.v1.webhook_endpoints.delete(endpoint_id)
        except stripe.StripeError as exc:
            raise ProcessorError(f"{type(exc).__name__}: {exc.code or exc.http_status}") from None
