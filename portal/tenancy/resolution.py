"""Which tenant a request host belongs to."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from portal.models import Tenant


@dataclass(frozen=True)
class HostMatch:
    tenant: Tenant | None
    is_platform: bool


def platform_hosts() -> set[str]:
    hosts = {settings.SETTLE_PLATFORM_HOST}
    hosts.update(h.lower() for h in getattr(settings, "SETTLE_EXTRA_PLATFORM_HOSTS", []))
    return {h for h in hosts if h}


def resolve_host(host: str) -> HostMatch | None:
    """Map a host (no port) to a tenant or the platform; None when unknown."""
    host = host.lower().rstrip(".")
    if host in platform_hosts():
        return HostMatch(tenant=None, is_platform=True)
    base = settings.SETTLE_BASE_DOMAIN
    if base and host.endswith("." + base):
        slug = host[: -len(base) - 1]
        if "." in slug:
            return None
        tenant = Tenant.objects.filter(slug=slug, is_active=True).first()
    else:
        # A custom domain is served only once its DNS token was verified
        # (security.domains): until then it is an unknown host like any other.
        tenant = Tenant.objects.filter(
            custom_domain=host, custom_domain_verified_at__isnull=False, is_active=True
        ).first()
    return HostMatch(tenant=tenant, is_platform=False) if tenant else None


def tenant_base_url(tenant: Tenant) -> str:
    """The public URL of a tenant's site, e.g. http://demo.localhost:8000/."""
    verified = tenant.custom_domain and tenant.custom_domain_verified_at is not None
    host = tenant.custom_domain if verified else f"{tenant.slug}.{settings.SETTLE_BASE_DOMAIN}"
    port = settings.SETTLE_PUBLIC_PORT
    default_port = {"http": 80, "https": 443}[settings.SETTLE_PUBLIC_SCHEME]
    port_part = f":{port}" if port and port != default_port else ""
    return f"{settings.SETTLE_PUBLIC_SCHEME}://{host}{port_part}/"
