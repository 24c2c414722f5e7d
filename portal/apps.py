from __future__ import annotations

from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks

        from portal.dbroles import check_runtime_role

        # Production must not serve as a superuser, a BYPASSRLS role or the
        # owner of the tables (portal.dbroles); `check --deploy` runs it.
        checks.register(check_runtime_role, checks.Tags.security, checks.Tags.database, deploy=True)
