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


def public_url(host: str, path: str = "/") -> str:
    """An absolute URL on `host` as the public reaches it (SETTLE_PUBLIC_SCHEME, SETTLE_PUBLIC_PORT)."""
    scheme, port = settings.SETTLE_PUBLIC_SCHEME, settings.SETTLE_PUBLIC_PORT
    port_part = f":{port}" if port and port != {"http": 80, "https": 443}[scheme] else ""
    return f"{scheme}://{host}{port_part}{path}"


def platform_url(path: str = "/") -> str:
    """An absolute URL on the platform host (operators, Django admin, processor webhooks)."""
    return public_url(settings.SETTLE_PLATFORM_HOST, path)


def tenant_base_url(tenant: Tenant) -> str:
    """The public URL of a tenant's site, e.g. http://demo.localhost:8000/."""
    if tenant.custom_domain and tenant.custom_domain_verified_at is not None:
        return public_url(tenant.custom_domain)
    return public_url(f"{tenant.slug}.{settings.SETTLE_BASE_DOMAIN}")
