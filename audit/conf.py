"""Audit configuration, read once from Django settings or the environment.

Each value may be set as a Django setting of the same name (portal/settings.py)
or, until it is moved there, as an environment variable read through the typed
readers in portal.env. Production refuses to start an audit operation without
its keys: there are no development fallbacks there.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from portal.env import env_int, env_secret, env_str


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def _key(name: str, purpose: str) -> bytes:
    """A 32-byte key from NAME (base64) or NAME_FILE; derived from SECRET_KEY outside production."""
    raw = _setting(name, None) or env_secret(name)
    if raw:
        try:
            key = base64.b64decode(raw, validate=True)
        except ValueError:
            raise ImproperlyConfigured(f"{name} must be base64") from None
        if len(key) != 32:
            raise ImproperlyConfigured(f"{name} must decode to 32 bytes, not {len(key)}")
        return key
    if getattr(settings, "PRODUCTION", False):
        raise ImproperlyConfigured(f"{name} must be set in production")
    # Development and tests: a key derived from the (development) SECRET_KEY,
    # separated by purpose so the two keys are unrelated.
    return hmac.new(settings.SECRET_KEY.encode(), purpose.encode(), hashlib.sha256).digest()


def signer_kind() -> str:
    """ "provider" (the key provider's asymmetric signing key) or "hmac" (the legacy key below)."""
    value = str(_setting("SETTLE_AUDIT_SIGNER", None) or env_str("SETTLE_AUDIT_SIGNER", "provider") or "provider")
    if value not in ("provider", "hmac"):
        raise ImproperlyConfigured("SETTLE_AUDIT_SIGNER must be provider or hmac")
    return value


def signing_key() -> bytes:
    """Legacy HMAC key: signs only when SETTLE_AUDIT_SIGNER=hmac; verifies older HMAC checkpoints."""
    return _key("SETTLE_AUDIT_SIGNING_KEY", "settle-audit-checkpoint-signing-v1")


def signing_key_id() -> str:
    return str(_setting("SETTLE_AUDIT_SIGNING_KEY_ID", None) or env_str("SETTLE_AUDIT_SIGNING_KEY_ID", "local-hmac-1"))


def export_master_key() -> bytes:
    """Legacy master key that wrapped export file keys before the key provider did; decrypts old exports."""
    return _key("SETTLE_AUDIT_EXPORT_KEY", "settle-audit-export-wrapping-v1")


def export_dir() -> Path:
    value = _setting("SETTLE_AUDIT_EXPORT_DIR", None) or env_str("SETTLE_AUDIT_EXPORT_DIR")
    return Path(value) if value else Path(settings.VAR_DIR) / "audit-exports"


def int_setting(name: str, default: int, *, minimum: int) -> int:
    value = _setting(name, None)
    if value is None:
        return env_int(name, default, minimum=minimum)
    if not isinstance(value, int) or value < minimum:
        raise ImproperlyConfigured(f"{name} must be an integer of at least {minimum}")
    return value


def hot_days() -> int:
    """Days of events kept in the database (searchable); older months are archived.

    PCI DSS 10.5.1 wants 12 months retained with 3 immediately available; the
    default keeps 13 months hot. The floor of 90 days is also enforced by the
    database trigger (migration 0005), which refuses to delete younger rows.
    """
    return int_setting("SETTLE_AUDIT_HOT_DAYS", 396, minimum=90)


def checkpoint_interval_seconds() -> int:
    return int_setting("SETTLE_AUDIT_CHECKPOINT_SECONDS", 300, minimum=10)


def export_link_ttl_seconds() -> int:
    return int_setting("SETTLE_AUDIT_EXPORT_LINK_SECONDS", 600, minimum=30)


def export_max_days() -> int:
    """Largest date range one export (or console search) may span."""
    return int_setting("SETTLE_AUDIT_EXPORT_MAX_DAYS", 400, minimum=1)


def archive_bucket() -> str:
    return str(_setting("SETTLE_AUDIT_ARCHIVE_BUCKET", None) or env_str("SETTLE_AUDIT_ARCHIVE_BUCKET", "") or "")


def archive_prefix() -> str:
    return str(
        _setting("SETTLE_AUDIT_ARCHIVE_PREFIX", None) or env_str("SETTLE_AUDIT_ARCHIVE_PREFIX", "audit") or "audit"
    )


def archive_client_kwargs() -> dict[str, Any]:
    """boto3 S3 client arguments; an endpoint URL points at S3-compatible storage (moto in tests)."""
    kwargs: dict[str, Any] = {}
    endpoint = _setting("SETTLE_AUDIT_ARCHIVE_ENDPOINT_URL", None) or env_str("SETTLE_AUDIT_ARCHIVE_ENDPOINT_URL")
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    region = _setting("SETTLE_AUDIT_ARCHIVE_REGION", None) or env_str("SETTLE_AUDIT_ARCHIVE_REGION", "us-east-1")
    kwargs["region_name"] = region
    return kwargs


# --- Checkpoint anchors (audit.services.anchoring) -------------------------------------------


def anchor_bucket() -> str:
    """S3 bucket (Object Lock on) where each signed checkpoint is anchored; empty: the file store."""
    return str(_setting("SETTLE_AUDIT_ANCHOR_BUCKET", None) or env_str("SETTLE_AUDIT_ANCHOR_BUCKET", "") or "")


def anchor_prefix() -> str:
    value = _setting("SETTLE_AUDIT_ANCHOR_PREFIX", None) or env_str("SETTLE_AUDIT_ANCHOR_PREFIX", "anchors")
    return str(value or "anchors").strip("/")


def anchor_retain_days() -> int:
    """Object Lock retention (compliance mode) of each anchor: the audit trail's 6 years by default."""
    return int_setting("SETTLE_AUDIT_ANCHOR_RETAIN_DAYS", 2192, minimum=1)


def anchor_dir() -> Path:
    """The append-only anchor files of the development/test store (one `<chain>.jsonl` per chain)."""
    value = _setting("SETTLE_AUDIT_ANCHOR_DIR", None) or env_str("SETTLE_AUDIT_ANCHOR_DIR")
    return Path(value) if value else Path(settings.VAR_DIR) / "audit-anchors"


def anchor_store_kind() -> str:
    """ "s3" when an anchor bucket is set, else "file"; production refuses the file store.

    A file on the application server is outside the database but not out of
    an operator's reach: only object-locked storage makes an anchor
    impossible to change, so production must name a bucket.
    """
    if anchor_bucket():
        return "s3"
    if getattr(settings, "PRODUCTION", False):
        raise ImproperlyConfigured("SETTLE_AUDIT_ANCHOR_BUCKET must be set in production (S3 with Object Lock)")
    return "file"
