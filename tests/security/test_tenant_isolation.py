"""Another tenant's object is a 404 for every URL that takes an id (SECURITY.md).

Generated from the URL walk: for every route with at least one kwarg, every
persona allowed on it (a guest for the public patient pages) asks on its own
clinic's host for the other clinic's ids, in both directions (alpha's host
with beta's ids, beta's host with alpha's ids). Every method the view serves
answers 404: GET, and POST (with a CSRF token, as the normal test client
sends) with the body the view expects, so the 404 comes from the object
lookup and not from a form error. A view that does not serve the method may
answer 405; that comes before any lookup and says nothing about the object.

Guests hold the other clinic's checkout in their session too (as a browser
that paid at both clinics would), so the tenant wall is tested, not only the
session wall. Samples that belong to one user (a session, a grant, a download
link) are 404 for everyone else at the same clinic as well.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from django.test import Client
from django.urls import reverse

from billing.processor import set_processor_factory
from security.models import Role, UserSession
from tests.billing.fakes import FakeProcessor
from tests.billing.webhook_events import intent_object, signed_event
from tests.conftest import Clinic, platform_client
from tests.security.url_samples import (
    ANONYMOUS,
    MissingSample,
    Route,
    guest_client,
    id_routes,
    missing_samples,
    persona_client,
    route_client,
    routes,
    sample_for,
    value,
)

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

pytestmark = pytest.mark.django_db

# Bodies for POST views that validate their input before fetching anything,
# keyed by view: the request must be valid except for whose id it carries.
POST_DATA: dict[str, dict[str, str]] = {
    "audit.views.export_download": {"file": "pdf"},
}

DIRECTIONS = ("alpha's host, beta's ids", "beta's host, alpha's ids")

ISOLATION = [
    pytest.param(route, persona, direction, id=f"{route.label} as {persona} on {direction}")
    for route in id_routes()
    for persona in route.personas()
    for direction in DIRECTIONS
]


@pytest.fixture(autouse=True)
def _fake_processor() -> Iterator[FakeProcessor]:
    """Pages that reach the processor reach a fake one (no network)."""
    fake = FakeProcessor()
    set_processor_factory(lambda tenant, account: fake)
    yield fake
    set_processor_factory(None)


def _client(host: Clinic, other: Clinic, persona: str) -> Client:
    if persona == ANONYMOUS:
        return guest_client(host, host, other)
    return persona_client(host, persona)


def _post(client: Client, route: Route, path: str) -> TestResponse:
    return client.post(path, POST_DATA.get(route.view_name, {}))


def _answers(client: Client, route: Route, path: str) -> dict[str, int]:
    """The status of a GET and of a POST of `path`."""
    return {"GET": client.get(path).status_code, "POST": _post(client, route, path).status_code}


def test_every_id_in_every_url_has_a_sample():
    assert not missing_samples(), "\n".join(missing_samples())


def test_a_url_without_a_sample_fails_naming_its_kwarg():
    def widget(request: object, widget_id: object) -> None:  # pragma: no cover - never called
        return None

    new_url = Route(route="staff/widgets/<uuid:widget_id>/", view=widget, access="dashboard.view")
    with pytest.raises(MissingSample, match="'widget_id' of /staff/widgets/<uuid:widget_id>/"):
        sample_for(new_url, "widget_id")
    token_url = Route(route="staff/widgets/<str:token>/", view=widget, access="dashboard.view")
    with pytest.raises(MissingSample, match="'token'"):
        sample_for(token_url, "token")  # "token" means something different on every view


def test_the_walk_finds_the_id_urls():
    labels = {route.label for route in id_routes()}
    assert "/staff/patients/<uuid:patient_id>/" in labels
    assert "/pay/<uuid:checkout_id>/payments/<uuid:payment_id>/" in labels
    assert "/staff/sessions/<uuid:session_id>/end/" in labels
    assert all(route.kwargs for route in id_routes())
    assert {route.label for route in routes() if not route.kwargs}.isdisjoint(labels)


@pytest.mark.parametrize(("route", "persona", "direction"), ISOLATION)
def test_another_clinics_id_is_404(clinic_a: Clinic, clinic_b: Clinic, route: Route, persona: str, direction: str):
    host, other = (clinic_a, clinic_b) if direction == DIRECTIONS[0] else (clinic_b, clinic_a)
    path = route.path(other)
    client = _client(host, other, persona)
    answers = _answers(client, route, path)
    where = f"{path} on {host.host} as {persona}: {answers}"
    assert set(answers.values()) <= {404, 405}, f"{where}; another clinic's id must be 404"
    assert 404 in answers.values(), f"{where}; no method looked the id up"


@pytest.mark.parametrize("route", [pytest.param(r, id=r.label) for r in id_routes()])
def test_the_clinics_own_ids_are_found(clinic_a: Clinic, clinic_b: Clinic, route: Route):
    """The control: with its own ids the same request finds the object, so the 404s above mean something."""
    path = route.path(clinic_a)
    route.path(clinic_b)  # both clinics hold every sample, as in the test above
    persona = route.owner()
    if route.on_platform_host and not route.is_public:
        # The platform console: an operator may open every clinic there (by design).
        answers = {"GET": route_client(clinic_a, route, persona).get(path).status_code}
        if answers["GET"] == 405:
            answers["POST"] = _post(route_client(clinic_a, route, persona), route, path).status_code
    elif route.on_platform_host:
        client: Client = platform_client()
        answers = {"POST": _post(client, route, path).status_code}  # unsigned: refused as such, not as unknown
    else:
        client = _client(clinic_a, clinic_b, persona)
        answers = {"GET": client.get(path).status_code}
        if answers["GET"] == 405:
            answers["POST"] = _post(client, route, path).status_code
    found = {method: status for method, status in answers.items() if status != 405}
    assert found, f"{path} as {persona}: {answers}"
    assert not {403, 404} & set(found.values()), f"{path} as {persona} with alpha's own ids: {answers}"


@pytest.mark.parametrize("persona", [r for r in Role.values if r not in (Role.PATIENT, Role.CLINIC_ADMIN)])
def test_another_users_session_at_the_same_clinic_is_404(clinic_a: Clinic, persona: str):
    admins_session = value(clinic_a, "session_id")  # the clinic admin's (url_samples.SAMPLE_OWNERS)
    response = persona_client(clinic_a, persona).post(reverse("sessions:end", kwargs={"session_id": admins_session}))
    assert response.status_code == 404, f"{persona} could end the clinic admin's session: {response.status_code}"
    assert UserSession.objects.filter(public_id=admins_session).exists()


def test_a_download_link_is_404_for_anyone_but_the_officer_it_was_issued_to(clinic_a: Clinic):
    from tests.factories import MembershipFactory, UserFactory

    route = next(r for r in id_routes() if r.view_name == "audit.views.download")
    path = route.path(clinic_a)
    colleague = UserFactory.create(email="officer2@alpha.example")
    MembershipFactory.create(tenant=clinic_a.tenant, user=colleague, role=Role.COMPLIANCE_OFFICER)
    assert clinic_a.client(colleague).get(path).status_code == 404
    assert clinic_a.client_as(Role.COMPLIANCE_OFFICER).get(path).status_code == 200


def test_a_webhook_signed_for_another_clinic_is_refused(clinic_a: Clinic, clinic_b: Clinic):
    """The webhook URL names its clinic on the platform host; the clinic's own secret is the wall."""
    payload, signature = signed_event(
        secret=clinic_b.webhook_secret,
        event_id="evt_cross_tenant",
        event_type="payment_intent.succeeded",
        obj=intent_object("pi_cross_tenant", status="succeeded", amount=100, metadata={}),
    )
    url = reverse("webhooks:stripe", kwargs={"tenant_id": clinic_a.tenant.public_id})
    response = platform_client().post(
        url, data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature
    )
    assert response.status_code == 400
