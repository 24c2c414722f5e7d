"""The localstripe stand-in the suite (and `make run`) uses, and its fixture."""

from __future__ import annotations

import json
import time
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


def _charge_succeeds(localstripe) -> str:
    """A successful PaymentIntent: localstripe sends payment_intent.succeeded a second later."""
    from billing.processor.stripe_processor import StripeProcessor
    from tests.billing.test_stripe_localstripe import browser_confirm_setup

    processor = StripeProcessor(secret_key="sk_test_devtools", publishable_key="pk_test_devtools")
    setup = processor.create_setup_intent(metadata={}, idempotency_key="devtools-setup")
    browser_confirm_setup(localstripe.base_url, setup.client_secret, "4242424242424242")
    method = processor.retrieve_setup_intent(setup.id).payment_method_id
    assert method
    intent = processor.create_payment(
        amount=500,
        currency="USD",
        payment_method_id=method,
        capture_method="automatic",
        metadata={},
        idempotency_key="devtools-pay",
    )
    return intent.id


@pytest.fixture
def webhook_listener():
    """A loopback HTTP server that counts the webhook deliveries it receives."""
    import http.server
    import threading

    received: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            received.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


def test_reset_unregisters_webhooks_so_events_do_not_leak_into_later_tests(localstripe, webhook_listener):
    url, received = webhook_listener
    body = json.dumps({"url": url, "secret": "whsec_leak"}).encode()

    def about(intent_id: str) -> list[bytes]:
        # Events of earlier tests' intents may still be in flight; count ours only.
        return [payload for payload in received if intent_id.encode() in payload]

    localstripe.request("POST", "/_config/webhooks/leak", body)
    control = _charge_succeeds(localstripe)
    deadline = time.monotonic() + 10
    while not about(control) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert about(control), "a registered webhook gets the event (control)"

    localstripe.request("POST", "/_config/webhooks/leak", body)
    after_reset = _charge_succeeds(localstripe)
    localstripe.reset()
    time.sleep(2)  # localstripe delivers a second after the event
    assert about(after_reset) == []
