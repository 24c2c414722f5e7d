"""Load portal/settings.py afresh under a chosen environment (settings tests)."""

from __future__ import annotations

import base64
import os
import runpy
import secrets
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Environment variables that may change what portal.settings does: each test
# starts without any of them (the suite's own DATABASE_URL, REDIS_URL... too).
SETTINGS_PREFIXES = (
    "SETTLE_",
    "DJANGO_",
    "DATABASE_",
    "DB_",
    "REDIS_",
    "CELERY_",
    "STRIPE_",
    "SECURE_",
    "EMAIL_",
    "CSRF_",
    "AWS_",
    "LOG_LEVEL",
    "DEFAULT_FROM_EMAIL",
)


def settings_variables() -> list[str]:
    return [name for name in os.environ if name.startswith(SETTINGS_PREFIXES)]


def production_environment(tmp_path: Path) -> dict[str, str]:
    """What an operator sets for production (see .env.example)."""
    return {
        "SETTLE_ENV": "production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        "DATABASE_URL": "postgres://settle:secret@db.internal:5432/settle",
        "REDIS_URL": "redis://cache.internal:6379/0",
        "SETTLE_BASE_DOMAIN": "settle.example",
        "DJANGO_ALLOWED_HOSTS": ".settle.example,settle.example",
        "SETTLE_VAR_DIR": str(tmp_path / "var"),
        # PHI encryption master key (security.crypto): base64 of 32 random bytes.
        "SETTLE_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        # Audit checkpoint signing and export wrapping keys (audit.conf).
        "SETTLE_AUDIT_SIGNING_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "SETTLE_AUDIT_EXPORT_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
    }


def load_settings(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> dict[str, Any]:
    """Execute portal/settings.py afresh with `env` (the live settings are untouched)."""
    for name in settings_variables():
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "portal" / "settings.py"), run_name="settle_settings_probe")
