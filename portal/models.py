"""The tenant: a clinic on the platform."""

from __future__ import annotations

import uuid
import zoneinfo

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from portal.money import CURRENCY_CHOICES

RESERVED_SLUGS = {"www", "admin", "api", "platform", "static", "media", "mail", "app"}

slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{1,38}[a-z0-9])$",
    "Use 3-40 lowercase letters, digits or hyphens, starting and ending with a letter or digit.",
)
colour_validator = RegexValidator(r"^#[0-9a-fA-F]{6}$", "Use a colour such as #1f6feb.")


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a known time zone.")


def validate_slug_not_reserved(value: str) -> None:
    if value in RESERVED_SLUGS:
        raise ValidationError(f"{value!r} is reserved.")


class Tenant(models.Model):
    """A clinic. Not tenant-owned itself: resolved from the request host."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    slug = models.CharField(max_length=40, unique=True, validators=[slug_validator, validate_slug_not_reserved])
    name = models.CharField(max_length=120)
    # A custom domain (e.g. pay.northside-clinic.example) served besides the slug host.
    custom_domain = models.CharField(max_length=253, unique=True, null=True, blank=True)
    brand_colour = models.CharField(max_length=7, default="#1f6feb", validators=[colour_validator])
    logo = models.FileField(upload_to="tenant-logos/", blank=True)
    timezone = models.CharField(max_length=64, default="America/New_York", validators=[validate_timezone])
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES, default="USD")
    # Smallest payment a patient may make, in minor units, unless the balance is smaller.
    minimum_payment_minor = models.PositiveIntegerField(default=100, validators=[MinValueValidator(1)])
    support_phone = models.CharField(max_length=32, blank=True)
    support_email = models.EmailField(blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    # What the look-up form shows as an example statement number ("e.g. DC-100234").
    # Blank shows no example: a made-up one would mislead a clinic's patients.
    statement_number_hint = models.CharField(max_length=40, blank=True)
    # The clinic's postal address, printed on receipts.
    address_line1 = models.CharField(max_length=120, blank=True)
    address_line2 = models.CharField(max_length=120, blank=True)
    city = models.CharField(max_length=80, blank=True)
    state = models.CharField(max_length=40, blank=True)
    postal_code = models.CharField(max_length=16, blank=True)

    # Suspension (platform console): patients see "temporarily unavailable", staff
    # cannot sign in, nothing is deleted. Null means the clinic is not suspended.
    suspended_at = models.DateTimeField(null=True, blank=True)
    suspension_reason = models.CharField(max_length=200, blank=True)

    # A custom domain is served only once its DNS TXT token has been verified.
    custom_domain_token = models.CharField(max_length=64, blank=True)
    custom_domain_verified_at = models.DateTimeField(null=True, blank=True)

    # Guest statement look-up lockout, within SECURITY.md's bounds (at most 10
    # failures per statement, locked at least 30 minutes). The per-IP counter is
    # per clinic; its limit is higher because a clinic kiosk or shared Wi-Fi is
    # one address for many patients (decision 0006).
    lookup_statement_failure_limit = models.PositiveSmallIntegerField(default=10)
    lookup_ip_failure_limit = models.PositiveSmallIntegerField(default=50)
    lookup_lockout_minutes = models.PositiveSmallIntegerField(default=30)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def initials(self) -> str:
        words = [w for w in self.name.split() if w[:1].isalnum()]
        return "".join(w[0] for w in words[:2]).upper() or "?"
