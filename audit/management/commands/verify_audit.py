"""Verify audit chains in place: `manage.py verify_audit --tenant SLUG` (or --platform, --all)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from audit.anchors import AnchorError
from audit.models import AuditChain, Outcome
from audit.recorder import audit_record
from audit.services.integrity import chain_verify
from portal.models import Tenant
from portal.tenancy.context import platform_scope


class Command(BaseCommand):
    help = (
        "Verify the hash chain, checkpoints, external anchors and head of one tenant's (or every) audit chain. "
        "Exit 1 if broken."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--tenant", metavar="SLUG", help="the clinic's slug")
        group.add_argument("--platform", action="store_true", help="the platform chain (events without a clinic)")
        group.add_argument("--all", action="store_true", help="every chain")

    def handle(self, *args: Any, **options: Any) -> None:
        with platform_scope():
            chains = self._chains(options)
            broken = 0
            for chain in chains:
                label = chain.tenant.slug if chain.tenant else "platform"
                try:
                    result = chain_verify(chain=chain)
                except AnchorError as exc:
                    broken += 1
                    self.stderr.write(self.style.ERROR(f"{label}: cannot check the chain against its anchors: {exc}"))
                    continue
                if result.ok:
                    self.stdout.write(self.style.SUCCESS(f"{label}: {result.summary()}"))
                else:
                    broken += 1
                    self.stderr.write(self.style.ERROR(f"{label}: {result.summary()}"))
                    for problem in result.problems[1:]:
                        self.stderr.write(f"  {problem}")
                with transaction.atomic():
                    audit_record(
                        action="audit.verified",
                        tenant=chain.tenant,
                        outcome=Outcome.SUCCESS if result.ok else Outcome.FAILURE,
                        actor_role="system",
                        target_type="audit_chain",
                        target_id=chain.key,
                        details={
                            "events": result.events_checked,
                            "first_bad_sequence": result.first_bad_sequence,
                            "via": "cli",
                        },
                    )
        if broken:
            raise CommandError(f"{broken} audit chain(s) failed verification", returncode=1)

    def _chains(self, options: dict[str, Any]) -> list[AuditChain]:
        if options["all"]:
            return list(AuditChain.objects.select_related("tenant").order_by("pk"))
        if options["platform"]:
            return list(AuditChain.objects.filter(tenant__isnull=True))
        tenant = Tenant.objects.filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"no clinic with slug {options['tenant']!r}", returncode=2)
        chain = AuditChain.objects.select_related("tenant").filter(tenant=tenant).first()
        if chain is None:
            self.stdout.write(f"{tenant.slug}: no audit events yet; nothing to verify.")
            return []
        return [chain]
