"""Re-wrap data keys under the current master/KMS key: `manage.py rewrap_keys [--tenant demo]`.

Cheap (one unwrap and one wrap per data key, no row is touched). Run it after
changing SETTLE_MASTER_KEY (keeping the old one in SETTLE_MASTER_KEY_PREVIOUS
until this has finished) or SETTLE_KMS_KEY_ID.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.models import Tenant
from security.crypto.errors import KeyUnavailableError
from security.crypto.providers import get_provider
from security.crypto.rotation import data_keys_rewrap


class Command(BaseCommand):
    help = "Re-wrap every data key (of one clinic, or all) under the current master or KMS key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", help="slug of one clinic (default: every clinic)")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = None
        if options.get("tenant"):
            tenant = Tenant.objects.filter(slug=options["tenant"]).first()
            if tenant is None:
                raise CommandError(f"no clinic with slug {options['tenant']!r}")
        try:
            count = data_keys_rewrap(tenant=tenant)
        except KeyUnavailableError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{count} data keys re-wrapped under {get_provider().current_key_id()}.")
