"""Give events recorded before the chain existed their place in it.

Each chain (one per tenant, one for the platform) numbers its existing events
by id and hashes them with the same canonical form the recorder uses
(audit.chain, version 1). Runs before the append-only trigger (0005).
"""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

from django.db import migrations

from audit.chain import GENESIS, PLATFORM_CHAIN, event_hash, format_time


def backfill(apps: Any, schema_editor: Any) -> None:
    AuditEvent = apps.get_model("audit", "AuditEvent")
    AuditChain = apps.get_model("audit", "AuditChain")
    Tenant = apps.get_model("portal", "Tenant")
    tenant_ids = AuditEvent.objects.values_list("tenant_id", flat=True).distinct()
    for tenant_id in tenant_ids:
        tenant = Tenant.objects.get(pk=tenant_id) if tenant_id is not None else None
        key = str(tenant.public_id) if tenant is not None else PLATFORM_CHAIN
        chain, _ = AuditChain.objects.get_or_create(key=key, defaults={"tenant": tenant, "last_hash": GENESIS})
        prev_hash, sequence = chain.last_hash, chain.last_sequence
        for event in AuditEvent.objects.filter(tenant_id=tenant_id, sequence__isnull=True).order_by("id"):
            sequence += 1
            event.public_id = uuid.uuid4()
            event.chain_id = chain.pk
            event.sequence = sequence
            event.prev_hash = prev_hash
            ip = str(ipaddress.ip_address(event.source_ip)) if event.source_ip else None
            record = {
                "chain": key,
                "sequence": sequence,
                "public_id": str(event.public_id),
                "occurred_at": format_time(event.occurred_at),
                "actor_user_id": str(event.actor_user_id) if event.actor_user_id else None,
                "actor_role": event.actor_role,
                "action": event.action,
                "target_type": event.target_type,
                "target_id": event.target_id,
                "outcome": event.outcome,
                "source_ip": ip,
                "request_id": event.request_id,
                "details": event.details,
                "prev_hash": prev_hash,
            }
            event.hash = event_hash(record)
            event.save(update_fields=["public_id", "chain_id", "sequence", "prev_hash", "hash"])
            prev_hash = event.hash
        chain.last_sequence, chain.last_hash = sequence, prev_hash
        chain.save(update_fields=["last_sequence", "last_hash"])


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_chain_schema")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop, elidable=False)]
