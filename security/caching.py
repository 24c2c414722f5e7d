"""`Cache-Control: no-store` on every response, unless a view declares itself a cacheable asset.

Pages of the staff console and of the patient site carry PHI, card details
or secrets (statements, receipts, ledgers, audit events, key rotations), and
a shared or browser cache must never keep them (OWASP ASVS 8.2.1). Marking
each such view would fail open for the next view someone adds, so the rule is
the other way round: every response is no-store, and only views wrapped in
`cacheable_asset` (public assets with nothing about a person in them, such as
a clinic's stylesheet and logo) keep the Cache-Control they set. Static files
served by WhiteNoise under STATIC_URL keep theirs too.

SecurityHeadersMiddleware (security.headers) applies the rule; it sits
outermost, so error pages and responses made by earlier middleware get it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.http import HttpRequest
from django.http.response import HttpResponseBase

ViewFunc = TypeVar("ViewFunc", bound=Callable[..., Any])

NO_STORE = "no-store"


def cacheable_asset(view: ViewFunc) -> ViewFunc:
    """Declare a view's responses to be public assets that caches may keep.

    Only for responses that hold nothing about a patient, a payment or a
    secret. tests/security/test_no_store.py keeps the list of such views.
    """
    view.settle_cacheable = True  # type: ignore[attr-defined]
    return view


def is_cacheable_view(view: Callable[..., Any] | None) -> bool:
    return view is not None and getattr(view, "settle_cacheable", False) is True


def _is_static(request: HttpRequest) -> bool:
    static_url = settings.STATIC_URL or ""
    return bool(static_url) and static_url.startswith("/") and request.path.startswith(static_url)


def apply_no_store(request: HttpRequest, response: HttpResponseBase) -> None:
    """Make `response` no-store unless it is a declared cacheable asset or a static file."""
    match = getattr(request, "resolver_match", None)
    if is_cacheable_view(match.func if match is not None else None) or (match is None and _is_static(request)):
        return
    current = response.get("Cache-Control", "")
    if NO_STORE in {part.strip().lower() for part in current.split(",")}:
        return  # never_cache and friends already say so (and more)
    # Replace, not add: "public, max-age=…" from a view that did not declare
    # itself an asset must not survive next to no-store.
    response["Cache-Control"] = NO_STORE
