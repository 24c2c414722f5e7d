"""StripeAdmin's requests and answers, against a loopback stub of Stripe's API.

localstripe implements the balance but not webhook endpoints; this stub
answers what Stripe documents, so the request StripeAdmin sends to create an
endpoint and its mapping of each kind of refusal are checked too.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest

from billing.processor import EndpointApiUnavailable, ProcessorError, ProcessorKeyRefused, ProcessorUnavailable
from billing.processor.stripe_admin import StripeAdmin


class StubStripe:
    def __init__(self) -> None:
        # path -> (status, body)
        self.answers: dict[str, tuple[int, dict[str, Any]]] = {}
        self.requests: list[tuple[str, str, dict[str, list[str]], str]] = []


def _handler(stub: StubStripe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            path = self.path.split("?")[0]
            stub.requests.append((self.command, path, parse_qs(body), self.headers.get("Authorization", "")))
            status, payload = stub.answers.get(path, (404, {"error": {"type": "invalid_request_error"}}))
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def stub(settings) -> Iterator[StubStripe]:
    stub = StubStripe()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()


def _error(kind: str) -> dict[str, Any]:
    return {"error": {"type": kind, "message": "refused"}}


def test_check_account_reads_the_balance_with_the_key(stub: StubStripe):
    stub.answers["/v1/balance"] = (200, {"object": "balance", "livemode": True, "available": [], "pending": []})
    assert StripeAdmin(secret_key="sk_live_abc").check_account().livemode is True
    method, path, _, auth = stub.requests[0]
    assert (method, path) == ("GET", "/v1/balance") and auth == "Bearer sk_live_abc"


@pytest.mark.parametrize(
    ("status", "kind", "raised", "reason"),
    [
        (401, "invalid_request_error", ProcessorKeyRefused, "authentication"),
        (403, "invalid_request_error", ProcessorKeyRefused, "permission"),
        (500, "api_error", ProcessorUnavailable, None),
    ],
)
def test_check_account_maps_refusals(stub: StubStripe, status: int, kind: str, raised: type, reason: str | None):
    stub.answers["/v1/balance"] = (status, _error(kind))
    with pytest.raises(raised) as info:
        StripeAdmin(secret_key="sk_test_abc").check_account()
    if reason:
        assert getattr(info.value, "reason", None) == reason


def test_create_webhook_endpoint_sends_url_and_events_and_keeps_the_secret(stub: StubStripe):
    stub.answers["/v1/webhook_endpoints"] = (
        200,
        {
            "id": "we_123",
            "object": "webhook_endpoint",
            "url": "https://p.example/webhooks/stripe/x/",
            "secret": "whsec_s",
        },
    )
    endpoint = StripeAdmin(secret_key="sk_test_abc").create_webhook_endpoint(
        url="https://p.example/webhooks/stripe/x/",
        events=["payment_intent.succeeded", "payment_intent.canceled"],
        description="Settle alpha",
    )
    assert (endpoint.id, endpoint.secret) == ("we_123", "whsec_s")
    method, path, form, _ = stub.requests[0]
    assert (method, path) == ("POST", "/v1/webhook_endpoints")
    assert form["url"] == ["https://p.example/webhooks/stripe/x/"]
    assert sorted(v for k, vs in form.items() if k.startswith("enabled_events") for v in vs) == [
        "payment_intent.canceled",
        "payment_intent.succeeded",
    ]


@pytest.mark.parametrize(("status", "kind"), [(404, "invalid_request_error"), (403, "invalid_request_error")])
def test_create_webhook_endpoint_unavailable_means_by_hand(stub: StubStripe, status: int, kind: str):
    stub.answers["/v1/webhook_endpoints"] = (status, _error(kind))
    with pytest.raises(EndpointApiUnavailable):
        StripeAdmin(secret_key="rk_test_abc").create_webhook_endpoint(url="https://x/", events=[], description="d")


def test_delete_webhook_endpoint_sends_delete_and_maps_refusals(stub: StubStripe):
    stub.answers["/v1/webhook_endpoints/we_old"] = (
        200,
        {"id": "we_old", "object": "webhook_endpoint", "deleted": True},
    )
    StripeAdmin(secret_key="sk_test_abc").delete_webhook_endpoint("we_old")
    assert stub.requests[-1][:2] == ("DELETE", "/v1/webhook_endpoints/we_old")
    with pytest.raises(ProcessorError):
        StripeAdmin(secret_key="sk_test_abc").delete_webhook_endpoint("we_gone")
