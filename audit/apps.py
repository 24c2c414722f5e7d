from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.backends.signals import connection_created

TEST_TRUNCATE_SETTING = "settle.audit_test_truncate"


def allow_test_truncate(sender: Any, connection: Any, **kwargs: Any) -> None:
    """Let pytest-django empty the audit tables of a *test* database.

    The trigger (migration 0005) honours this setting only in a database
    whose name starts with "test_", and we set it only on connections to
    such a database: production never sees it. See
    docs/decisions/0004-audit-append-only.md.
    """
    if connection.vendor != "postgresql":
        return
    if not str(connection.settings_dict.get("NAME") or "").startswith("test_"):
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, 'on', false)", [TEST_TRUNCATE_SETTING])


class AuditConfig(AppConfig):
    name = "audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from audit import conf
        from audit.fields import register_raw_json
        from portal.celery import app

        connection_created.connect(allow_test_truncate, dispatch_uid="settle-audit-test-truncate")
        connection_created.connect(register_raw_json, dispatch_uid="settle-audit-raw-json")
        # Signed checkpoints of every chain head, and the nightly archive sweep.
        app.conf.beat_schedule = {
            **(app.conf.beat_schedule or {}),
            "settle-audit-checkpoints": {
                "task": "audit.tasks.audit_checkpoint_sign_all",
                "schedule": conf.checkpoint_interval_seconds(),
            },
            "settle-audit-archive": {
                "task": "audit.tasks.audit_archive_run",
                "schedule": 24 * 60 * 60,
            },
        }
