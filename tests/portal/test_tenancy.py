"""Tenancy: the scope guard on tenant-owned models and host resolution."""

from __future__ import annotations

import datetime

import pytest
from django.test import Client
from django.utils import timezone

from billing.models import LedgerEntry, Patient, Statement
from portal.tenancy.context import (
    TenantScopeError,
    active_scope,
    current_tenant,
    platform_scope,
    tenant_scope,
)
from portal.tenancy.resolution import resolve_host
from security.models import Membership

pytestmark = pytest.mark.django_db

TENANT_OWNED = [Patient, Statement, LedgerEntry, Membership]


# --- the scope guard --------------------------------------------------------------------------


@pytest.mark.parametrize("model", TENANT_OWNED, ids=lambda m: m.__name__)
def test_scoped_manager_raises_outside_a_scope(clinic_a, model):
    assert active_scope() is None
    with pytest.raises(TenantScopeError, match="outside a tenant scope"):
        model.objects.all()
    with pytest.raises(TenantScopeError):
        model.objects.filter(tenant=clinic_a.tenant).count()


def test_current_tenant_raises_outside_a_tenant_scope(clinic_a):
    with pytest.raises(TenantScopeError):
        current_tenant()
    with platform_scope(), pytest.raises(TenantScopeError):
        current_tenant()
    with tenant_scope(clinic_a.tenant):
        assert current_tenant() == clinic_a.tenant


@pytest.mark.parametrize("model", TENANT_OWNED, ids=lambda m: m.__name__)
def test_scoped_manager_sees_only_the_scope_tenant(clinic_a, clinic_b, model):
    with tenant_scope(clinic_a.tenant):
        rows = list(model.objects.all())
        assert rows, "the standard world gives each clinic rows of every kind"
        assert {row.tenant_id for row in rows} == {clinic_a.tenant.pk}
    with tenant_scope(clinic_b.tenant):
        assert {row.tenant_id for row in model.objects.all()} == {clinic_b.tenant.pk}


def test_another_tenants_row_cannot_be_fetched_even_by_primary_key(clinic_a, clinic_b):
    with tenant_scope(clinic_a.tenant):
        assert not Patient.objects.filter(pk=clinic_b.patient.pk).exists()
        with pytest.raises(Patient.DoesNotExist):
            Patient.objects.get(public_id=clinic_b.patient.public_id)
        assert not Statement.objects.filter(tenant=clinic_b.tenant).exists()


def test_platform_scope_sees_every_tenant(clinic_a, clinic_b):
    with platform_scope():
        tenants = set(Patient.objects.values_list("tenant_id", flat=True))
    assert tenants == {clinic_a.tenant.pk, clinic_b.tenant.pk}


def test_scopes_nest_and_restore(clinic_a, clinic_b):
    with tenant_scope(clinic_a.tenant):
        with tenant_scope(clinic_b.tenant):
            assert current_tenant() == clinic_b.tenant
        assert current_tenant() == clinic_a.tenant
        with platform_scope():
            assert Patient.objects.count() == 2
        assert Patient.objects.count() == 1
    assert active_scope() is None


def _patient_for(tenant, account_number="X-1"):
    return Patient(
        tenant=tenant,
        account_number=account_number,
        first_name="Sam",
        last_name="Example",
        date_of_birth=datetime.date(1990, 1, 1),
    )


def test_saving_a_row_for_another_tenant_inside_a_scope_raises(clinic_a, clinic_b):
    with platform_scope():
        before = Patient.objects.count()
    with tenant_scope(clinic_a.tenant), pytest.raises(TenantScopeError, match="another tenant"):
        _patient_for(clinic_b.tenant).save()
    with platform_scope():
        # account_number is encrypted (no filtering on it): count the rows instead.
        assert Patient.objects.count() == before


def test_saving_outside_a_scope_raises(clinic_a):
    with pytest.raises(TenantScopeError, match="outside a tenant scope"):
        _patient_for(clinic_a.tenant).save()


def test_updating_a_loaded_row_into_another_tenant_raises(clinic_a, clinic_b):
    with tenant_scope(clinic_a.tenant):
        patient = Patient.objects.get(pk=clinic_a.patient.pk)
        patient.tenant = clinic_b.tenant
        with pytest.raises(TenantScopeError):
            patient.save(update_fields=["tenant"])


# --- host resolution --------------------------------------------------------------------------


def test_slug_host_resolves_to_its_clinic(clinic_a, clinic_b):
    match = resolve_host("alpha.localhost")
    assert match is not None and match.tenant == clinic_a.tenant and not match.is_platform
    assert resolve_host("BETA.localhost.").tenant == clinic_b.tenant  # type: ignore[union-attr]


def test_custom_domain_resolves_to_its_clinic(clinic_a):
    clinic_a.tenant.custom_domain = "pay.alpha-clinic.example"
    clinic_a.tenant.save(update_fields=["custom_domain"])
    assert resolve_host("pay.alpha-clinic.example") is None, "not served before its DNS token is verified"
    clinic_a.tenant.custom_domain_verified_at = timezone.now()
    clinic_a.tenant.save(update_fields=["custom_domain_verified_at"])
    match = resolve_host("pay.alpha-clinic.example")
    assert match is not None and match.tenant == clinic_a.tenant


@pytest.mark.parametrize("host", ["nobody.localhost", "a.alpha.localhost", "alpha.example.org", "localhost.evil"])
def test_unknown_hosts_resolve_to_nothing(clinic_a, host):
    assert resolve_host(host) is None


def test_platform_host_resolves_to_the_platform(settings):
    match = resolve_host(settings.SETTLE_PLATFORM_HOST)
    assert match is not None and match.is_platform and match.tenant is None


def test_inactive_clinic_resolves_to_nothing(clinic_a):
    clinic_a.tenant.is_active = False
    clinic_a.tenant.save(update_fields=["is_active"])
    assert resolve_host("alpha.localhost") is None


def _template_names(response):
    return [template.name for template in response.templates if template.name]


def test_unknown_host_gets_the_friendly_404_page(clinic_a):
    response = Client(HTTP_HOST="nobody.localhost").get("/")
    assert response.status_code == 404
    assert "portal/unknown_host.html" in _template_names(response)
    assert b"Traceback" not in response.content


def test_inactive_clinic_gets_the_same_404_as_an_unknown_host(clinic_a):
    unknown = Client(HTTP_HOST="nobody.localhost").get("/")
    clinic_a.tenant.is_active = False
    clinic_a.tenant.save(update_fields=["is_active"])
    inactive = Client(HTTP_HOST="alpha.localhost").get("/")
    assert inactive.status_code == unknown.status_code == 404
    assert _template_names(inactive) == _template_names(unknown)
    assert clinic_a.tenant.name.encode() not in inactive.content


def test_clinic_host_serves_the_clinic(clinic_a):
    response = clinic_a.client().get("/")
    assert response.status_code == 200
    assert response.wsgi_request.tenant == clinic_a.tenant
    assert clinic_a.tenant.name.encode() in response.content


def test_custom_domain_serves_the_clinic(clinic_a, settings):
    clinic_a.tenant.custom_domain = "pay.alpha-clinic.example"
    clinic_a.tenant.custom_domain_verified_at = timezone.now()
    clinic_a.tenant.save(update_fields=["custom_domain", "custom_domain_verified_at"])
    # Operators list custom domains in DJANGO_ALLOWED_HOSTS (Django's own host check).
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "pay.alpha-clinic.example"]
    response = Client(HTTP_HOST="pay.alpha-clinic.example").get("/")
    assert response.status_code == 200
    assert response.wsgi_request.tenant == clinic_a.tenant  # type: ignore[attr-defined]


def test_platform_host_serves_the_platform_page(settings):
    response = Client(HTTP_HOST=settings.SETTLE_PLATFORM_HOST).get("/")
    assert response.status_code == 200
    assert "portal/platform_home.html" in _template_names(response)
    assert response.wsgi_request.tenant is None  # type: ignore[attr-defined]
    assert response.wsgi_request.is_platform_host is True  # type: ignore[attr-defined]


def test_clinic_pages_are_not_served_on_the_platform_host(clinic_a, settings):
    client = Client(HTTP_HOST=settings.SETTLE_PLATFORM_HOST)
    assert client.get(f"/staff/patients/{clinic_a.patient.public_id}/").status_code == 404


def test_host_outside_allowed_hosts_is_refused():
    assert Client(HTTP_HOST="attacker.example").get("/").status_code == 400


@pytest.mark.parametrize("host", ["alpha.localhost", "localhost", "nobody.localhost", "10.0.0.5"])
def test_health_check_answers_on_any_host(clinic_a, host):
    # Load balancers probe by IP address: the health check answers before host validation.
    response = Client(HTTP_HOST=host).get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}
