"""A clinic's custom domain: the name's rules, and proving the clinic controls it.

A custom domain (e.g. pay.lakeside-pediatrics.example) is served only once
verified (portal.tenancy.resolution): anyone can point a name at us, so
before we serve a clinic's pages under it the clinic must publish a DNS TXT
record at `_settle-verify.<domain>` holding the token we issued
(Tenant.custom_domain_token). Setting or changing the domain issues a fresh
token and clears the verification.

The check runs from `manage.py verify_domains` (scheduled, or by hand) and
from the button on the clinic's page in the platform console. DNS is reached
through one resolver function: `dns_txt_records` (dnspython) by default,
replaced in tests with `set_txt_resolver` or the `resolver=` argument, so no
test needs the network.

Audited: platform.domain_verified in the platform chain, outcome success when
the token matched and failure otherwise (details.result says why).
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Callable
from enum import StrEnum

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from audit.models import Outcome
from audit.recorder import audit_record
from portal.models import Tenant
from portal.tenancy.context import platform_scope

VERIFY_LABEL = "_settle-verify"
TOKEN_PREFIX = "settle-verify-"  # noqa: S105 - a public label, not a secret
DNS_TIMEOUT_SECONDS = 5.0
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_TOP_LEVEL = re.compile(r"[a-z][a-z0-9-]*[a-z0-9]|xn--[a-z0-9-]+")
_DOMAIN_MAX_LENGTH = 253

TxtResolver = Callable[[str], list[str]]


class DomainLookupError(Exception):
    """DNS could not answer (timeout, no name servers): neither yes nor no."""


class DomainError(ValueError):
    """A custom domain the rules refuse; the message names the problem."""


class DomainCheck(StrEnum):
    VERIFIED = "verified"
    NOT_FOUND = "not_found"  # no TXT record at _settle-verify.<domain>
    WRONG_TOKEN = "wrong_token"  # noqa: S105 - TXT records there, none holding our token
    LOOKUP_FAILED = "lookup_failed"  # DNS did not answer; try again later
    NO_DOMAIN = "no_domain"  # the clinic has no custom domain (or it changed meanwhile)


CHECK_MESSAGES: dict[DomainCheck, str] = {
    DomainCheck.VERIFIED: "The domain is verified and now serves the clinic's pages.",
    DomainCheck.NOT_FOUND: "No TXT record was found at {record}. Publish it with the value shown, then check again "
    "(DNS changes can take a while to appear).",
    DomainCheck.WRONG_TOKEN: "A TXT record exists at {record} but none holds this clinic's token. Check that the "
    "value is exactly the one shown.",
    DomainCheck.LOOKUP_FAILED: "DNS did not answer for {record}. Nothing changed; try again in a few minutes.",
    DomainCheck.NO_DOMAIN: "This clinic has no custom domain waiting for verification.",
}


def verification_record_name(domain: str) -> str:
    return f"{VERIFY_LABEL}.{domain}"


def domain_token_new() -> str:
    """A fresh token for the TXT record (fits Tenant.custom_domain_token)."""
    return TOKEN_PREFIX + secrets.token_hex(16)


def domain_normalise(value: str) -> str:
    """The domain as stored: lower case, no trailing dot. Raises DomainError naming the problem.

    Refused: anything that is not a fully qualified host name (a URL, a
    path, an IP address, one label, bad characters), and names the platform
    itself answers for (the platform host, the base domain and every name
    under it: those are clinics' slug addresses).
    """
    domain = value.strip().lower().rstrip(".")
    if "://" in domain or "/" in domain or ":" in domain or "@" in domain:
        raise DomainError("Enter a domain name only, such as pay.lakeside-pediatrics.example (no https://, no path).")
    try:
        ipaddress.ip_address(domain)
    except ValueError:
        pass
    else:
        raise DomainError("Enter a domain name, not an IP address.")
    base = settings.SETTLE_BASE_DOMAIN
    platform = settings.SETTLE_PLATFORM_HOST
    if domain in {base, platform, "localhost"} or domain.endswith((f".{base}", ".localhost")):
        raise DomainError(
            f"{domain} is reserved: the platform serves it. A custom domain must be the clinic's own domain."
        )
    labels = domain.split(".")
    if (
        len(domain) > _DOMAIN_MAX_LENGTH
        or len(labels) < 2
        or not all(_LABEL.fullmatch(label) for label in labels)
        or not _TOP_LEVEL.fullmatch(labels[-1])
    ):
        raise DomainError(
            "That is not a valid domain name. Use letters, digits and hyphens in dot-separated parts, "
            "such as pay.lakeside-pediatrics.example."
        )
    return domain


# --- DNS ---------------------------------------------------------------------------------


def dns_txt_records(name: str) -> list[str]:
    """The TXT strings published at `name` ([] when the name or the record does not exist).

    Raises DomainLookupError when DNS cannot answer either way.
    """
    import dns.exception
    import dns.resolver

    resolver = dns.resolver.Resolver()
    resolver.lifetime = DNS_TIMEOUT_SECONDS
    try:
        answer = resolver.resolve(name, "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException as exc:
        raise DomainLookupError(type(exc).__name__) from exc
    return [b"".join(record.strings).decode("utf-8", "replace") for record in answer]


_resolver_override: TxtResolver | None = None


def set_txt_resolver(resolver: TxtResolver | None) -> None:
    """Replace the DNS look-up (tests); None restores dnspython."""
    global _resolver_override
    _resolver_override = resolver


def clinic_domain_verify(
    *,
    tenant: Tenant,
    actor: object | None = None,
    actor_role: str = "system",
    request: HttpRequest | None = None,
    resolver: TxtResolver | None = None,
) -> DomainCheck:
    """Check the clinic's TXT record and mark its custom domain verified when the token matches.

    Permission: platform.clinics (the console's button), or the
    verify_domains command. The DNS query runs outside any transaction;
    the result is applied only if the domain and token are still those that
    were checked (an edit meanwhile wins). Audited: platform.domain_verified
    (success or failure, details.result) unless there was no pending domain.
    """
    domain, token = tenant.custom_domain, tenant.custom_domain_token
    if not domain or not token or tenant.custom_domain_verified_at is not None:
        return DomainCheck.NO_DOMAIN
    lookup = resolver or _resolver_override or dns_txt_records
    try:
        records = lookup(verification_record_name(domain))
        result = DomainCheck.VERIFIED if token in records else _absent(records)
    except DomainLookupError:
        result = DomainCheck.LOOKUP_FAILED
    with platform_scope(), transaction.atomic(durable=True):
        locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
        if locked.custom_domain != domain or locked.custom_domain_token != token:
            return DomainCheck.NO_DOMAIN
        if result == DomainCheck.VERIFIED and locked.custom_domain_verified_at is None:
            locked.custom_domain_verified_at = timezone.now()
            locked.save(update_fields=["custom_domain_verified_at"])
            tenant.custom_domain_verified_at = locked.custom_domain_verified_at
        audit_record(
            action="platform.domain_verified",
            tenant=None,
            outcome=Outcome.SUCCESS if result == DomainCheck.VERIFIED else Outcome.FAILURE,
            actor=actor,
            actor_role=actor_role,
            target_type="tenant",
            target_id=str(tenant.public_id),
            request=request,
            details={"result": result.value},
        )
    return result


def _absent(records: list[str]) -> DomainCheck:
    return DomainCheck.NOT_FOUND if not records else DomainCheck.WRONG_TOKEN


def clinics_domains_pending() -> list[Tenant]:
    """Clinics whose custom domain waits for verification, oldest first (verify_domains)."""
    return list(
        Tenant.objects.filter(custom_domain__isnull=False, custom_domain_verified_at__isnull=True)
        .exclude(custom_domain="")
        .exclude(custom_domain_token="")  # nosec B106 - the DNS token field, empty means none issued
        .order_by("created_at")
    )
