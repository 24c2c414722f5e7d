"""The localstripe stand-in the suite (and `make run`) uses, and its fixture."""

from __future__ import annotations

import json
import urllib.request

import pytest
import stripe
from django.conf import settings

pytestmark = pytest.mark.localstripe


def _customers(client: stripe.StripeClient) -> list[str]:
    return [customer.id for customer in client.v1.customers.list().data]


def _client(base_url: str) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_alpha", base_addresses={"api": base_url})


def test_fixture_points_the_portal_at_localstripe(localstripe):
    api_base, js_url = settings.STRIPE_API_BASE, settings.STRIPE_JS_URL
    assert api_base == localstripe.base_url
    assert js_url == f"{localstripe.base_url}/js.stripe.com/v3/"
    script_sources = settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]["script-src"]
    assert localstripe.base_url in script_sources  # type: ignore[operator]
    assert localstripe.base_url.startswith("http://127.0.0.1:")


def test_stripe_js_is_served(localstripe):
    with urllib.request.urlopen(localstripe.js_url, timeout=10) as response:
        assert response.status == 200
        assert b"Stripe" in response.read()


def test_objects_live_until_the_next_test(localstripe):
    client = _client(localstripe.base_url)
    client.v1.customers.create(params={"metadata": {"settle_ref": "c-1"}})
    assert len(_customers(client)) == 1
    localstripe.reset()
    assert _customers(client) == []


def test_each_test_starts_with_an_empty_localstripe(localstripe):
    client = _client(localstripe.base_url)
    assert _customers(client) == []
    client.v1.customers.create()


def test_webhook_registration_round_trips(localstripe):
    body = json.dumps({"url": "http://127.0.0.1:9/webhooks/", "secret": "whsec_alpha"}).encode()
    localstripe.request("POST", "/_config/webhooks/alpha", body)
