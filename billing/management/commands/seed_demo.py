"""manage.py seed_demo: create the demo clinics and print how to try them."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from billing.demo import DemoSeedRefused, demo_report, demo_seed, demo_summary


class Command(BaseCommand):
    help = (
        "Create Demo Clinic and Northside Family Practice with staff of every role, patients and "
        "statements (development and test only; idempotent), then print the URLs, statement numbers "
        "with dates of birth and balances, and the staff logins."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION:
            raise CommandError(
                "seed_demo refuses to run with SETTLE_ENV=production: it creates users with a published "
                "password. Onboard real clinics instead (docs/running.md)."
            )
        try:
            result = demo_seed()
        except DemoSeedRefused as exc:
            raise CommandError(str(exc)) from None
        except ValidationError as exc:
            raise CommandError(f"demo data rejected: {'; '.join(exc.messages)}") from None
        self.stdout.write(demo_summary(result))
        self.stdout.write("")
        self.stdout.write(demo_report(result))
