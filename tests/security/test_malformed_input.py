"""No endpoint answers a server error (5xx) to malformed input.

Walks every route of the URL configuration (tests/security/url_samples.py, so
views added later are walked too), as someone the view serves: the persona
holding its permission and owning its samples, a guest whose browser opened
the checkout, the platform host for the webhook. For each, the field names
of the page's own forms (from a GET of it) plus common ones get malformed
values: NUL characters, lone surrogates, huge strings, wrong JSON types,
documents that are not JSON, broken multipart bodies, a NUL in a cookie.
First a fixed set of such requests, then a bounded number of generated ones
(hypothesis, no shrinking). Every answer is below 500; a refusal is fine.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_from_bytes

import pytest
from django.conf import settings
from django.test import Client
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from billing.processor import set_processor_factory
from tests.billing.fakes import FakeProcessor
from tests.conftest import Clinic
from tests.security.url_samples import ANONYMOUS, Route, guest_client, persona_client, routes

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

pytestmark = pytest.mark.django_db

GENERATED_PER_ROUTE = 8
HUGE = "A" * 200_000
# Field names every route gets besides its own forms' (query parameters views read directly).
COMMON_FIELDS = ("q", "page", "next", "date_from", "date_to", "action", "kind", "file", "purpose", "token")
_FIELD = re.compile(r"""<(?:input|select|textarea|button)\b[^>]*\bname\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
JSON_TYPES = ("application/json", "application/csp-report", "application/reports+json")

NASTY = (
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "\x00\ud800",
    HUGE,
    "",
    "-1",
    "9" * 60,
    "1e309",
    "NaN",
    "2026-13-45",
    "../../../etc/passwd",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "\u202e\ufeff\u200b",
)
_ips = count(1)


@dataclass
class Malformed:
    """One malformed request."""

    method: str
    body: bytes = b""
    content_type: str = ""
    query: str = ""
    cookies: dict[str, str] = field(default_factory=dict)
    note: str = ""

    def describe(self) -> str:
        preview = self.body[:120]
        return (
            f"{self.method} ?{self.query[:120]} [{self.content_type}] {preview!r} cookies={self.cookies} ({self.note})"
        )


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogatepass")  # a lone surrogate becomes invalid UTF-8


def _urlencoded(pairs: list[tuple[str, Any]]) -> str:
    return "&".join(f"{quote_from_bytes(_bytes(k))}={quote_from_bytes(_bytes(v))}" for k, v in pairs)


def _json(value: Any) -> bytes:
    # ensure_ascii writes NUL and lone surrogates as \u0000 and \ud800: valid JSON text.
    return json.dumps(value, ensure_ascii=True).encode("ascii")


def _multipart(boundary: str, parts: list[tuple[str, bytes, str | None]]) -> bytes:
    chunks = []
    for name, payload, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        chunks.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode("utf-8", "surrogatepass"))
        chunks.append(payload + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks)


# Each group is sent alone: a NUL is refused before anything else is looked at,
# so it must not hide the other values.
VALUE_GROUPS = (
    ("\x00", "a\x00b"),
    ("\ud800", "x\udfffy"),
    (HUGE,),
    tuple(v for v in NASTY if v not in {"\x00", "a\x00b", "\ud800", "x\udfffy", HUGE}),
)
JSON_DOCUMENTS: tuple[Any, ...] = (
    {"csp-report": {"effective-directive": "\x00", "blocked-uri": "\ud800", "document-uri": "a\x00"}},
    {"csp-report": {"effective-directive": "script-src\x00", "blocked-uri": HUGE, "document-uri": 5}},
    [{"type": "csp-violation", "body": {"effectiveDirective": "\ud800\x00", "blockedURL": "\x00"}}],
    [{"type": "csp-violation", "url": "\x00", "body": {"effectiveDirective": "img-src", "documentURL": []}}],
    {"\x00": "\x00", "id": "evt_\x00", "type": "payment_intent.succeeded\x00", "data": {"object": "\ud800"}},
    "\x00",
    None,
    [[[[[[[[[[]]]]]]]]]],
)
NOT_JSON = (b"", b"{", b"\x00\xff\xfe", b"[" * 5000, b'{"a": "\xed\xa0\x80"}')


def fixed_cases(fields: list[str]) -> list[Malformed]:
    """The same malformed requests for every route (about 40)."""
    cases: list[Malformed] = []
    for group in VALUE_GROUPS:
        pairs = [(name, group[i % len(group)]) for i, name in enumerate(fields)]
        cases.append(Malformed("POST", _urlencoded(pairs).encode(), "application/x-www-form-urlencoded", note="form"))
        cases.append(Malformed("GET", query=_urlencoded(pairs), note="query"))
    cases.append(Malformed("POST", _urlencoded([("a\x00", "b")]).encode(), "application/x-www-form-urlencoded"))
    cases.append(Malformed("GET", cookies={settings.SESSION_COOKIE_NAME: "abc\x00defghijk"}, note="NUL cookie"))
    for document in (*JSON_DOCUMENTS, {name: group[0] for name, group in zip(fields, VALUE_GROUPS * 9, strict=False)}):
        content_type = JSON_TYPES[len(cases) % len(JSON_TYPES)]
        cases.append(Malformed("POST", _json(document), content_type, note="json"))
    cases.append(Malformed("POST", _json({name: [1, {"x": None}] for name in fields}), "application/json"))
    for index, raw in enumerate(NOT_JSON):
        cases.append(Malformed("POST", raw, JSON_TYPES[index % len(JSON_TYPES)], note="not json"))
    boundary = "settleboundary"
    multipart = f"multipart/form-data; boundary={boundary}"
    cases += [
        Malformed("POST", b"garbage without boundaries", multipart, note="multipart"),
        Malformed("POST", b"--x\r\n", "multipart/form-data", note="multipart without a boundary"),
        Malformed("POST", f"--{boundary}\r\nContent-Disposition: form-data; name=".encode(), multipart),
        Malformed(
            "POST",
            _multipart(boundary, [(name, b"a\x00b\xed\xa0\x80", None) for name in fields]),
            multipart,
            note="multipart with NUL and invalid UTF-8",
        ),
        Malformed(
            "POST",
            _multipart(boundary, [("logo", b"\x89PNG\r\n\x1a\n\x00", "a\x00.png"), ("file", b"x", "\ud800.csv")]),
            multipart,
            note="multipart files with NUL and surrogate names",
        ),
    ]
    return cases


_text = st.one_of(
    st.sampled_from(NASTY),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=30),  # surrogates and NUL included
    st.text(max_size=300),
)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


def generated(fields: list[str]) -> st.SearchStrategy[Malformed]:
    names = st.sampled_from(fields) | _text
    pairs = st.lists(st.tuples(names, _text), min_size=1, max_size=6)
    form = pairs.map(lambda p: Malformed("POST", _urlencoded(p).encode(), "application/x-www-form-urlencoded"))
    query = pairs.map(lambda p: Malformed("GET", query=_urlencoded(p)))
    shaped = st.dictionaries(names, _json_values, max_size=6)
    as_json = st.tuples(st.one_of(shaped, _json_values), st.sampled_from(JSON_TYPES)).map(
        lambda t: Malformed("POST", _json(t[0]), t[1])
    )
    raw = st.tuples(st.binary(max_size=200), st.sampled_from((*JSON_TYPES, "multipart/form-data; boundary=b"))).map(
        lambda t: Malformed("POST", t[0], t[1])
    )
    return st.one_of(form, query, as_json, raw)


@pytest.fixture(autouse=True)
def _fake_processor() -> Iterator[FakeProcessor]:
    fake = FakeProcessor()
    set_processor_factory(lambda tenant, account: fake)
    yield fake
    set_processor_factory(None)


def _client(clinic: Clinic, route: Route) -> Client:
    if route.on_platform_host:
        return Client(HTTP_HOST=settings.SETTLE_PLATFORM_HOST, raise_request_exception=False)
    persona = route.owner()
    client = guest_client(clinic, clinic) if persona == ANONYMOUS else persona_client(clinic, persona)
    client.raise_request_exception = False
    return client


def _fields(client: Client, path: str) -> list[str]:
    page = client.get(path)
    found = set()
    if page.get("Content-Type", "").startswith("text/html"):
        found = set(_FIELD.findall(page.content.decode("utf-8", "replace")))
    return sorted((found | set(COMMON_FIELDS)) - {"csrfmiddlewaretoken"})


def send(client: Client, path: str, request: Malformed) -> int:
    """The status of `request` (a view's exception is a 500: raise_request_exception is off)."""
    # A new address each time, so per-IP rate limits and lockouts do not hide what comes after.
    address = f"10.{next(_ips) % 250}.{next(_ips) % 250}.{next(_ips) % 250}"
    for name, value in request.cookies.items():
        client.cookies[name] = value
    try:
        response: TestResponse = client.generic(
            request.method,
            path + (f"?{request.query}" if request.query else ""),
            data=request.body,
            content_type=request.content_type or "application/octet-stream",
            REMOTE_ADDR=address,
        )
    finally:
        for name in request.cookies:
            client.cookies.pop(name, None)
    return response.status_code


WALK = [pytest.param(route, id=f"{route.label} {route.view_name}") for route in routes()]


@pytest.mark.parametrize("route", WALK)
def test_malformed_input_never_gets_a_server_error(clinic_a: Clinic, route: Route):
    path = route.path(clinic_a)
    client = _client(clinic_a, route)
    fields = _fields(client, path)
    failures = [
        f"{status}: {request.describe()}"
        for request in fixed_cases(fields)
        if (status := send(client, path, request)) >= 500
    ]
    assert not failures, f"{path} ({route.view_name}) answered server errors:\n  " + "\n  ".join(failures[:10])

    @hypothesis_settings(
        max_examples=GENERATED_PER_ROUTE,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(request=generated(fields))
    def explore(request: Malformed) -> None:
        status = send(client, path, request)
        assert status < 500, f"{path} ({route.view_name}) answered {status}: {request.describe()}"

    explore()


def test_the_walk_covers_forms_and_json_endpoints():
    walked = {route.view_name for route in routes()}
    assert {
        "security.headers.csp_report",
        "billing.views.webhooks.stripe_webhook",
        "billing.views.patient.pay_submit",
        "billing.views.patient.landing",
        "billing.views.staff.patients",
        "security.auth_views.login",
        "security.team_views.invite",
    } <= walked


def test_a_csp_report_with_nul_and_surrogates_is_stored_clean(clinic_a: Clinic):
    from security.models import CspViolation

    client = Client(HTTP_HOST=clinic_a.host)
    body = _json({"csp-report": {"effective-directive": "script-src\x00", "blocked-uri": "https://x.example/\ud800"}})
    response = client.generic("POST", "/csp-report/", data=body, content_type="application/csp-report")
    assert response.status_code == 204
    stored = CspViolation.objects.get()
    assert stored.directive == "script-src"
    assert stored.blocked == "https://x.example"


def test_a_nul_in_a_query_or_form_field_is_refused_with_a_clear_message(clinic_a: Clinic):
    client = persona_client(clinic_a, "front_desk")
    for response in (
        client.get("/staff/patients/?page=1%00"),
        client.post("/staff/patients/", {"q": "Smith\x00"}),
        Client(HTTP_HOST=clinic_a.host).post("/", {"statement_number": "A\x00"}),
    ):
        assert response.status_code == 400
        assert b"not allowed" in response.content


def test_a_nul_in_the_path_is_not_found(clinic_a: Clinic):
    officer = persona_client(clinic_a, "compliance_officer")
    for client, path in (
        (Client(HTTP_HOST=clinic_a.host), "/staff/team/invitations/abc%00def/"),
        (officer, "/staff/audit/downloads/%00%00/"),
        (Client(HTTP_HOST=clinic_a.host), "/%00"),
    ):
        assert client.get(path).status_code == 404, path


def test_textinput_helpers():
    from security.textinput import clean_text, is_storable, json_is_storable, raw_json_is_storable

    assert clean_text("a\x00b\ud800") == "ab\ufffd"
    assert is_storable("plain") and not is_storable("\x00") and not is_storable("\udfff")
    assert json_is_storable({"a": [1, "b", None]}) and not json_is_storable({"a\x00": 1})
    assert not json_is_storable([[["\ud800"]]])
    assert raw_json_is_storable(b"not json") and not raw_json_is_storable(b'{"a": "\\u0000"}')
