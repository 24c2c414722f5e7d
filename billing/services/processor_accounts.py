"""A clinic's processor (Stripe) settings: keys, webhook endpoint, card-check policy.

The clinic settings page (permission settings.manage, checked by its views)
writes through these services. Rules:

- A key is checked before anything is saved: its kind by prefix
  (publishable pk_, secret sk_ or restricted rk_), both keys of one mode
  (test or live), live keys only in production, then a call to the processor
  with the secret key, whose answer must agree on the mode. A refusal raises
  ProcessorSettingsError with a message naming the problem; nothing changes.
- Secrets (the secret key, the webhook signing secret) are stored in the
  encrypted fields and never shown again: the page shows when each was set
  and its last four characters. Audit events say a secret "changed", never
  its value.
- Each change writes its audit event in the same durable transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from audit.recorder import audit_record
from billing.models import CardCheckPolicy, ProcessorAccount
from billing.processor import (
    EndpointApiUnavailable,
    ProcessorError,
    ProcessorKeyRefused,
    ProcessorUnavailable,
    get_processor_admin,
)
from portal.models import Tenant
from portal.tenancy.resolution import platform_url

# The events webhook_receive acts on (billing.services.webhooks): every
# PaymentIntent state change, every refund change, every dispute change.
# Registered with the processor, or listed for the admin to tick when the
# endpoint is set up by hand.
WEBHOOK_EVENTS: tuple[str, ...] = (
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.processing",
    "payment_intent.requires_action",
    "payment_intent.amount_capturable_updated",
    "refund.created",
    "refund.updated",
    "refund.failed",
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
)

TEST, LIVE = "test", "live"

logger = logging.getLogger(__name__)


class ProcessorSettingsError(Exception):
    """A key or secret the rules refuse; `field` names the form field, the message is for the admin."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def processor_account_set(
    *,
    tenant: Tenant,
    publishable_key: str,
    secret_key: str,
    webhook_secret: str,
    card_check_policy: str = CardCheckPolicy.FLAG,
) -> ProcessorAccount:
    """Create or replace the tenant's Stripe keys and card-check policy without
    asking the processor (seeding and tests; the settings page uses
    processor_keys_set)."""
    if not publishable_key.startswith("pk_") or not secret_key.startswith(("sk_", "rk_")):
        raise ValueError("Stripe keys must start with pk_ (publishable) and sk_ or rk_ (secret)")
    if not webhook_secret:
        raise ValueError("the webhook signing secret is required")
    if card_check_policy not in CardCheckPolicy.values:
        raise ValueError(f"unknown card-check policy {card_check_policy!r}")
    now = timezone.now()
    with transaction.atomic():
        account, _ = ProcessorAccount.objects.update_or_create(
            tenant=tenant,
            defaults={
                "publishable_key": publishable_key,
                "secret_key": secret_key,
                "webhook_secret": webhook_secret,
                "card_check_policy": card_check_policy,
                "livemode": key_mode(publishable_key) == LIVE,
                "secret_key_set_at": now,
                "webhook_secret_set_at": now,
            },
        )
    return account


# --- Reads -------------------------------------------------------------------------------


def key_mode(key: str) -> str | None:
    """ "test" or "live" from a Stripe key's prefix (pk_test_..., sk_live_...); None if neither."""
    for mode in (TEST, LIVE):
        if key.startswith((f"pk_{mode}_", f"sk_{mode}_", f"rk_{mode}_")):
            return mode
    return None


def secret_ending(secret: str) -> str:
    """The last four characters, as the page shows a secret ("ends …1234")."""
    return secret[-4:] if len(secret) >= 8 else ""


@dataclass(frozen=True)
class ProcessorStatus:
    """What the settings page shows of the processor connection: never a secret."""

    account: ProcessorAccount | None
    webhook_url: str

    @property
    def connected(self) -> bool:
        return self.account is not None and bool(self.account.publishable_key)

    @property
    def mode(self) -> str:
        return LIVE if self.account is not None and self.account.livemode else TEST

    @property
    def secret_key_ending(self) -> str:
        return secret_ending(self.account.secret_key) if self.account is not None else ""

    @property
    def webhook_secret_ending(self) -> str:
        return secret_ending(self.account.webhook_secret) if self.account is not None else ""

    @property
    def webhook_ready(self) -> bool:
        return self.account is not None and bool(self.account.webhook_secret)

    @property
    def webhook_events(self) -> tuple[str, ...]:
        return WEBHOOK_EVENTS


def tenant_webhook_url(tenant: Tenant) -> str:
    """The public URL the processor posts this clinic's events to (on the platform host)."""
    return platform_url(reverse("webhooks:stripe", kwargs={"tenant_id": tenant.public_id}))


def processor_status(*, tenant: Tenant) -> ProcessorStatus:
    return ProcessorStatus(
        account=ProcessorAccount.objects.filter(tenant=tenant).first(), webhook_url=tenant_webhook_url(tenant)
    )


# --- Checks ------------------------------------------------------------------------------


def _keys_check_format(*, publishable_key: str, secret_key: str) -> str:
    """The keys' mode once their kinds and modes agree; raises ProcessorSettingsError."""
    if publishable_key.startswith(("sk_", "rk_")):
        raise ProcessorSettingsError(
            "This is a secret key. The publishable key starts with pk_test_ or pk_live_.", field="publishable_key"
        )
    if not publishable_key.startswith("pk_") or key_mode(publishable_key) is None:
        raise ProcessorSettingsError("A publishable key starts with pk_test_ or pk_live_.", field="publishable_key")
    if secret_key.startswith("pk_"):
        raise ProcessorSettingsError(
            "This is a publishable key. The secret key starts with sk_ (or rk_ for a restricted key).",
            field="secret_key",
        )
    if not secret_key.startswith(("sk_", "rk_")) or key_mode(secret_key) is None:
        raise ProcessorSettingsError(
            "A secret key starts with sk_test_ or sk_live_ (rk_test_ or rk_live_ for a restricted key).",
            field="secret_key",
        )
    mode = key_mode(publishable_key)
    if key_mode(secret_key) != mode:
        raise ProcessorSettingsError(
            f"The publishable key is a {mode}-mode key but the secret key is a {key_mode(secret_key)}-mode key. "
            "Copy both from the same mode of the Stripe dashboard.",
            field="secret_key",
        )
    if mode == LIVE and not settings.PRODUCTION:
        raise ProcessorSettingsError(
            "Live-mode keys are refused outside production: they would take real money. Use test-mode keys here.",
            field="publishable_key",
        )
    return str(mode)


def _keys_check_with_processor(*, secret_key: str, mode: str) -> None:
    try:
        check = get_processor_admin(secret_key=secret_key).check_account()
    except ProcessorKeyRefused as exc:
        if exc.reason == "permission":
            message = (
                "Stripe accepted the key but it may not read the account balance. "
                "Give the restricted key read access to Balance, or use the secret key."
            )
        else:
            message = "Stripe refused this secret key: it is mistyped, revoked, or from another account."
        raise ProcessorSettingsError(message, field="secret_key") from None
    except ProcessorUnavailable:
        raise ProcessorSettingsError(
            "Stripe could not be reached to check the keys. Nothing was saved; try again in a minute."
        ) from None
    except ProcessorError:
        raise ProcessorSettingsError(
            "Stripe refused the check of this key. Nothing was saved.", field="secret_key"
        ) from None
    if check.livemode != (mode == LIVE):
        said = LIVE if check.livemode else TEST
        raise ProcessorSettingsError(
            f"Stripe says this secret key is a {said}-mode key, not {mode} mode.", field="secret_key"
        )


# --- Changes -----------------------------------------------------------------------------


def _audit(
    *,
    action: str,
    tenant: Tenant,
    account: ProcessorAccount,
    actor: Any,
    actor_role: str,
    request: HttpRequest | None,
    details: dict[str, Any],
) -> None:
    audit_record(
        action=action,
        tenant=tenant,
        actor=actor,
        actor_role=actor_role,
        target_type="processor_account",
        target_id=str(account.public_id),
        request=request,
        details=details,
    )


def processor_keys_set(
    *,
    tenant: Tenant,
    actor: Any,
    actor_role: str,
    request: HttpRequest | None,
    publishable_key: str,
    secret_key: str,
) -> ProcessorAccount:
    """Check the keys (format, mode, then with the processor) and save them.

    Raises ProcessorSettingsError naming the problem; nothing is saved then.
    Audit: settings.processor_keys_changed (mode; the secret only "changed").
    """
    publishable_key, secret_key = publishable_key.strip(), secret_key.strip()
    mode = _keys_check_format(publishable_key=publishable_key, secret_key=secret_key)
    # The processor call happens before the transaction: no lock is held while waiting.
    _keys_check_with_processor(secret_key=secret_key, mode=mode)
    now = timezone.now()
    with transaction.atomic(durable=True):
        account = ProcessorAccount.objects.select_for_update().filter(tenant=tenant).first()
        old_mode = None
        if account is None:
            # No secret yet (set by registration or by hand); webhooks are refused until then.
            account = ProcessorAccount(tenant=tenant, webhook_secret="")  # nosec B106
        else:
            old_mode = LIVE if account.livemode else TEST
        publishable_changed = account.publishable_key != publishable_key
        account.publishable_key = publishable_key
        account.secret_key = secret_key
        account.livemode = mode == LIVE
        account.keys_verified_at = now
        account.secret_key_set_at = now
        account.save()
        _audit(
            action="settings.processor_keys_changed",
            tenant=tenant,
            account=account,
            actor=actor,
            actor_role=actor_role,
            request=request,
            details={
                "mode_old": old_mode,
                "mode_new": mode,
                "publishable_key_changed": publishable_changed,
                "secret_key": "changed",
            },
        )
    return account


def processor_webhook_register(
    *, tenant: Tenant, actor: Any, actor_role: str, request: HttpRequest | None
) -> ProcessorAccount | None:
    """Register the clinic's webhook endpoint through the processor's API and keep its signing secret.

    Returns None when the API cannot do it (the page then shows the by-hand
    steps); raises ProcessorSettingsError when there are no keys or the
    processor is unreachable. Audit: settings.webhook_registered (with the
    replaced endpoint's id). The endpoint this one replaces is then deleted
    at the processor, best effort: its deliveries would fail the new secret.
    """
    account = ProcessorAccount.objects.filter(tenant=tenant).first()
    if account is None or not account.secret_key:
        raise ProcessorSettingsError("Save the Stripe keys first.")
    admin = get_processor_admin(secret_key=account.secret_key)
    try:
        endpoint = admin.create_webhook_endpoint(
            url=tenant_webhook_url(tenant), events=WEBHOOK_EVENTS, description=f"Settle {tenant.slug}"
        )
    except EndpointApiUnavailable:
        return None
    except ProcessorUnavailable:
        raise ProcessorSettingsError("Stripe could not be reached to register the webhook. Try again.") from None
    except ProcessorError:
        return None
    now = timezone.now()
    with transaction.atomic(durable=True):
        account = ProcessorAccount.objects.select_for_update().get(pk=account.pk)
        replaced = account.webhook_endpoint_id
        account.webhook_secret = endpoint.secret
        account.webhook_endpoint_id = endpoint.id
        account.webhook_secret_set_at = now
        account.save(update_fields=["webhook_secret", "webhook_endpoint_id", "webhook_secret_set_at", "updated_at"])
        _audit(
            action="settings.webhook_registered",
            tenant=tenant,
            account=account,
            actor=actor,
            actor_role=actor_role,
            request=request,
            details={
                "endpoint": endpoint.id[:64],
                "replaced_endpoint": replaced[:64] or None,
                "events": len(WEBHOOK_EVENTS),
                "webhook_secret": "changed",
            },
        )
    if replaced and replaced != endpoint.id:
        try:
            admin.delete_webhook_endpoint(replaced)
        except ProcessorError:
            # Gone already, or another account's: the admin can delete it in the dashboard.
            logger.info("replaced webhook endpoint not deleted", extra={"tenant": str(tenant.public_id)})
    return account


def processor_webhook_secret_set(
    *, tenant: Tenant, actor: Any, actor_role: str, request: HttpRequest | None, webhook_secret: str
) -> ProcessorAccount:
    """Keep a signing secret the admin copied from the processor's dashboard.

    Raises ProcessorSettingsError for anything that is not a signing secret.
    Audit: settings.webhook_secret_changed (the secret only "changed").
    """
    webhook_secret = webhook_secret.strip()
    if webhook_secret.startswith(("pk_", "sk_", "rk_")):
        raise ProcessorSettingsError(
            "This is an API key. The signing secret starts with whsec_ and is shown on the endpoint's page.",
            field="webhook_secret",
        )
    if not webhook_secret.startswith("whsec_") or len(webhook_secret) < 16 or any(c.isspace() for c in webhook_secret):
        raise ProcessorSettingsError(
            "A webhook signing secret starts with whsec_ and has no spaces.", field="webhook_secret"
        )
    with transaction.atomic(durable=True):
        account = ProcessorAccount.objects.select_for_update().filter(tenant=tenant).first()
        if account is None or not account.publishable_key:
            raise ProcessorSettingsError("Save the Stripe keys first.")
        account.webhook_secret = webhook_secret
        account.webhook_endpoint_id = ""
        account.webhook_secret_set_at = timezone.now()
        account.save(update_fields=["webhook_secret", "webhook_endpoint_id", "webhook_secret_set_at", "updated_at"])
        _audit(
            action="settings.webhook_secret_changed",
            tenant=tenant,
            account=account,
            actor=actor,
            actor_role=actor_role,
            request=request,
            details={"webhook_secret": "changed", "method": "by_hand"},
        )
    return account
