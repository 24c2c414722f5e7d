"""The client's address, as far as it can be trusted."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    """Address of the client that sent the request.

    Behind N trusted proxies (SETTLE_TRUSTED_PROXY_COUNT), each proxy appends
    the address it saw to X-Forwarded-For, so the client is the Nth entry from
    the right. Entries further left were written by the client and are ignored:
    forging the header cannot change the address used for lockout.
    """
    remote = request.META.get("REMOTE_ADDR", "") or "0.0.0.0"  # noqa: S104 - a placeholder address, nothing binds to it # nosec B104
    hops = settings.SETTLE_TRUSTED_PROXY_COUNT
    if hops <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(forwarded) < hops:
        return remote
    candidate = forwarded[-hops]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote
