"""Custom-domain verification (security.domains): the DNS TXT token, the command, and what is served.

DNS is a fake resolver (set_txt_resolver / resolver=); no test reaches the network.
"""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from portal.models import Tenant
from portal.tenancy.context import platform_scope
from portal.tenancy.resolution import resolve_host, tenant_base_url
from security.clinics import ClinicProfile, clinic_create
from security.domains import (
    DomainCheck,
    DomainLookupError,
    clinic_domain_verify,
    dns_txt_records,
    set_txt_resolver,
)
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

DOMAIN = "pay.lakeside.example"
RECORD = "_settle-verify.pay.lakeside.example"


@pytest.fixture
def lakeside(settings) -> Tenant:
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, DOMAIN]
    operator = UserFactory.create(email="op@platform.example", is_platform_operator=True, is_staff=True)
    profile = ClinicProfile(name="Lakeside Pediatrics", timezone="America/Chicago", custom_domain=DOMAIN)
    tenant, _ = clinic_create(actor=operator, slug="lakeside", currency="USD", profile=profile)
    return tenant


@pytest.fixture(autouse=True)
def _no_real_dns():
    def refuse(name: str) -> list[str]:
        raise AssertionError(f"a test reached for real DNS ({name})")

    set_txt_resolver(refuse)
    yield
    set_txt_resolver(None)


def _events() -> list[AuditEvent]:
    with platform_scope():
        return list(AuditEvent.objects.filter(action="platform.domain_verified").order_by("sequence"))


def _unknown_host_page() -> bytes:
    return Client(HTTP_HOST="nobody.localhost").get("/").content


def test_an_unverified_domain_is_not_served_and_looks_like_an_unknown_host(lakeside):
    assert resolve_host(DOMAIN) is None
    response = Client(HTTP_HOST=DOMAIN).get("/")
    assert response.status_code == 404
    assert response.content == _unknown_host_page(), "nothing tells a pending domain from a name never seen"
    assert tenant_base_url(lakeside).startswith("http://lakeside.localhost"), "links use the slug host meanwhile"
    assert Client(HTTP_HOST="lakeside.localhost").get("/").status_code == 200


def test_the_right_token_verifies_the_domain_and_it_is_served(lakeside):
    seen: list[str] = []

    def resolver(name: str) -> list[str]:
        seen.append(name)
        return ["v=spf1 -all", lakeside.custom_domain_token]

    assert clinic_domain_verify(tenant=lakeside, resolver=resolver) == DomainCheck.VERIFIED
    assert seen == [RECORD]
    lakeside.refresh_from_db()
    assert lakeside.custom_domain_verified_at is not None
    response = Client(HTTP_HOST=DOMAIN).get("/")
    assert response.status_code == 200
    assert response.wsgi_request.tenant == lakeside  # type: ignore[attr-defined]
    assert tenant_base_url(lakeside).startswith(f"http://{DOMAIN}")
    [event] = _events()
    assert (event.outcome, event.details, event.target_id) == (
        "success",
        {"result": "verified"},
        str(lakeside.public_id),
    )
    assert event.tenant_id is None, "a platform-chain event"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ([], DomainCheck.NOT_FOUND),
        (["settle-verify-0000000000000000000000000000dead"], DomainCheck.WRONG_TOKEN),
    ],
)
def test_a_missing_or_wrong_token_leaves_the_domain_pending(lakeside, answer, expected):
    assert clinic_domain_verify(tenant=lakeside, resolver=lambda name: answer) == expected
    lakeside.refresh_from_db()
    assert lakeside.custom_domain_verified_at is None
    assert resolve_host(DOMAIN) is None
    [event] = _events()
    assert (event.outcome, event.details) == ("failure", {"result": expected.value})


def test_a_token_published_at_the_domain_itself_does_not_count(lakeside):
    def resolver(name: str) -> list[str]:
        return [lakeside.custom_domain_token] if name == DOMAIN else []

    assert clinic_domain_verify(tenant=lakeside, resolver=resolver) == DomainCheck.NOT_FOUND


def test_a_resolver_failure_changes_nothing(lakeside):
    def resolver(name: str) -> list[str]:
        raise DomainLookupError("Timeout")

    assert clinic_domain_verify(tenant=lakeside, resolver=resolver) == DomainCheck.LOOKUP_FAILED
    lakeside.refresh_from_db()
    assert lakeside.custom_domain_verified_at is None
    [event] = _events()
    assert event.details == {"result": "lookup_failed"}


def test_an_edit_during_the_lookup_wins(lakeside):
    token = lakeside.custom_domain_token

    def resolver(name: str) -> list[str]:
        Tenant.objects.filter(pk=lakeside.pk).update(custom_domain_token="settle-verify-new")
        return [token]

    assert clinic_domain_verify(tenant=lakeside, resolver=resolver) == DomainCheck.NO_DOMAIN
    assert Tenant.objects.get(pk=lakeside.pk).custom_domain_verified_at is None
    assert _events() == []


def test_nothing_to_verify_without_a_pending_domain(clinic_a):
    assert clinic_domain_verify(tenant=clinic_a.tenant) == DomainCheck.NO_DOMAIN
    assert _events() == []


def test_the_command_verifies_pending_domains_with_the_injected_resolver(lakeside):
    token = lakeside.custom_domain_token
    set_txt_resolver(lambda name: [token] if name == RECORD else [])
    out = StringIO()
    call_command("verify_domains", stdout=out)
    assert f"lakeside: verified ({RECORD})" in out.getvalue()
    assert "1 of 1 pending domains verified." in out.getvalue()
    assert Tenant.objects.get(pk=lakeside.pk).custom_domain_verified_at is not None
    [event] = _events()
    assert event.actor_role == "system" and event.actor_user_id is None
    out = StringIO()
    call_command("verify_domains", stdout=out)
    assert "No custom domain is waiting" in out.getvalue()


def test_the_command_reports_a_pending_domain_and_goes_on(lakeside):
    set_txt_resolver(lambda name: [])
    out = StringIO()
    call_command("verify_domains", stdout=out)
    assert "lakeside: not_found" in out.getvalue()
    assert "0 of 1 pending domains verified." in out.getvalue()


def test_dnspython_answers_are_read_as_strings(monkeypatch):
    """The default resolver (dnspython) with its network call replaced."""
    import dns.resolver

    class Record:
        strings = (b"settle-verify-", b"abc")

    calls: list[tuple[str, str]] = []

    def resolve(self, name: str, kind: str) -> list[Record]:
        calls.append((name, kind))
        return [Record()]

    monkeypatch.setattr(dns.resolver.Resolver, "resolve", resolve)
    assert dns_txt_records(RECORD) == ["settle-verify-abc"]
    assert calls == [(RECORD, "TXT")]

    def nxdomain(self, name: str, kind: str) -> list[Record]:
        raise dns.resolver.NXDOMAIN

    monkeypatch.setattr(dns.resolver.Resolver, "resolve", nxdomain)
    assert dns_txt_records(RECORD) == []

    def timeout(self, name: str, kind: str) -> list[Record]:
        raise dns.exception.Timeout

    monkeypatch.setattr(dns.resolver.Resolver, "resolve", timeout)
    with pytest.raises(DomainLookupError):
        dns_txt_records(RECORD)


def test_a_verified_domain_of_a_disabled_clinic_is_not_served(lakeside):
    Tenant.objects.filter(pk=lakeside.pk).update(custom_domain_verified_at=timezone.now(), is_active=False)
    assert resolve_host(DOMAIN) is None
