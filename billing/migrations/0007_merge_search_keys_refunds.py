"""Joins migrations written side by side: patient search keys, refunds with disputes, processor settings."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0006_patient_search_keys"),
        ("billing", "0006_refunds_disputes"),
        ("billing", "0006_processor_account_settings"),
    ]

    operations: list[migrations.operations.base.Operation] = []
