"""Text from outside that PostgreSQL cannot store: NUL characters and lone surrogates.

PostgreSQL refuses a NUL (U+0000) in any text value, and psycopg2 cannot
encode a lone surrogate (U+D800-U+DFFF, which JSON's "\\ud800" escape
produces) as UTF-8. Either one reaching a query is a server error instead of
a clear refusal, on public endpoints as much as in the staff console.

- `RefuseUnstorableTextMiddleware` answers 400 to any request whose query,
  cookies or form fields carry a NUL (404 for one in the path), before a view
  (or the session middleware, with the session cookie) can pass it to a query.
  (Django's forms.CharField refuses NUL too, but views also read query
  parameters and URL parts directly.)
- JSON and raw bodies are the views' own: `clean_text` strips what cannot be
  stored from text a view keeps anyway (CSP reports, a browser's user agent);
  `json_is_storable` lets a view refuse a document carrying it (webhooks).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from django.http import Http404, HttpRequest, HttpResponseBadRequest
from django.http.response import HttpResponseBase

NUL = "\x00"
_SURROGATE = re.compile("[\ud800-\udfff]")
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
REFUSAL = "The request contains characters that are not allowed (a NUL character)."


def is_storable(text: str) -> bool:
    """True when PostgreSQL can store `text` as it is."""
    if NUL in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_text(text: str) -> str:
    """`text` without NUL characters, lone surrogates replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", text.replace(NUL, ""))


def json_is_storable(value: Any, *, depth: int = 0) -> bool:
    """True when every string (keys included) of a parsed JSON document can be stored."""
    if depth > 100:
        return False
    if isinstance(value, str):
        return is_storable(value)
    if isinstance(value, dict):
        return all(is_storable(str(k)) and json_is_storable(v, depth=depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(json_is_storable(item, depth=depth + 1) for item in value)
    return True


def raw_json_is_storable(payload: bytes) -> bool:
    """False for a JSON document carrying unstorable text; True otherwise (non-JSON is the caller's to judge)."""
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError):
        return True
    return json_is_storable(document)


def _outside_carries_nul(request: HttpRequest) -> bool:
    """A NUL in a query parameter or a cookie (names included)."""
    if any(NUL in key or NUL in value for key, value in request.COOKIES.items()):
        return True
    return _any_nul(request.GET)


def _form_carries_nul(request: HttpRequest) -> bool:
    """A NUL in a form field (names included) or an uploaded file's name."""
    if request.method != "POST" or (request.content_type or "") not in _FORM_TYPES:
        return False
    names = (upload.name or "" for _, uploads in request.FILES.lists() for upload in uploads)
    return _any_nul(request.POST) or any(NUL in name for name in names)


def _any_nul(fields: Any) -> bool:
    return any(NUL in key or any(NUL in value for value in values) for key, values in fields.lists())


class RefuseUnstorableTextMiddleware:
    """404 for a NUL in the path; 400 for one in the query string, the cookies or the form fields (file names too).

    The form is read in process_view, and not for views exempt from CSRF:
    those (webhooks, CSP reports) read the raw body themselves, which Django
    no longer gives once the form was parsed. Every other view's form is
    parsed by CsrfViewMiddleware anyway.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if NUL in request.path:
            # A path with a NUL names nothing here: the same 404 as any unknown
            # token or id, before a view looks it up (ours render the 404 page).
            raise Http404("no such page")
        if _outside_carries_nul(request):
            return _refusal()
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: Any
    ) -> HttpResponseBase | None:
        if getattr(view, "csrf_exempt", False):
            return None
        return _refusal() if _form_carries_nul(request) else None


def _refusal() -> HttpResponseBadRequest:
    return HttpResponseBadRequest(REFUSAL, content_type="text/plain; charset=utf-8")
