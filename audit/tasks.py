"""Thin Celery tasks: each takes ids and calls one service."""

from __future__ import annotations

from celery import shared_task

from audit.models import AuditExport, AuditVerification
from portal.tenancy.context import platform_scope


@shared_task
def audit_checkpoint_sign_all() -> int:
    from audit.services.integrity import checkpoint_sign_all

    return checkpoint_sign_all()


@shared_task
def audit_export_build(export_id: int) -> str:
    from audit.services.exports import export_build

    with platform_scope():
        export = AuditExport.objects.select_related("tenant").get(pk=export_id)
    return str(export_build(export=export).status)


@shared_task
def audit_verification_run(verification_id: int) -> str:
    from audit.services.integrity import verification_run

    with platform_scope():
        verification = AuditVerification.objects.select_related("tenant").get(pk=verification_id)
    return str(verification_run(verification=verification).status)


@shared_task
def audit_archive_run() -> int:
    from audit import conf
    from audit.services.archive import archive_due

    if not conf.archive_bucket():
        return 0
    return archive_due()
