"""Check the DNS TXT token of every clinic whose custom domain waits for verification.

    python manage.py verify_domains

Run it on a schedule (or after an operator says the record is published);
the platform console's "Check now" button does the same for one clinic.
Each check is audited (platform.domain_verified); a clinic whose record is
not there yet simply stays pending.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from security.domains import DomainCheck, clinic_domain_verify, clinics_domains_pending, verification_record_name


class Command(BaseCommand):
    help = "Verify pending custom domains by their _settle-verify DNS TXT record."

    def handle(self, *args: Any, **options: Any) -> None:
        pending = clinics_domains_pending()
        if not pending:
            self.stdout.write("No custom domain is waiting for verification.")
            return
        verified = 0
        for tenant in pending:
            result = clinic_domain_verify(tenant=tenant)
            verified += result == DomainCheck.VERIFIED
            record = verification_record_name(tenant.custom_domain or "")
            self.stdout.write(f"{tenant.slug}: {result.value} ({record})")
        self.stdout.write(f"{verified} of {len(pending)} pending domains verified.")
