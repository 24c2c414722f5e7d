"""Build Stripe webhook deliveries signed the way Stripe signs them."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any


def signed_event(
    *,
    secret: str,
    event_id: str,
    event_type: str,
    obj: dict[str, Any],
    timestamp: int | None = None,
) -> tuple[bytes, str]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    payload = json.dumps(
        {"id": event_id, "object": "event", "type": event_type, "created": timestamp, "data": {"object": obj}}
    ).encode()
    signature = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return payload, f"t={timestamp},v1={signature}"


def intent_object(intent_id: str, *, status: str, amount: int, metadata: dict[str, str]) -> dict[str, Any]:
    return {
        "id": intent_id,
        "object": "payment_intent",
        "status": status,
        "amount": amount,
        "currency": "usd",
        "metadata": metadata,
    }
