"""Joins two migrations written side by side: the patient search keys and refunds with disputes."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0006_patient_search_keys"),
        ("billing", "0006_refunds_disputes"),
    ]

    operations: list[migrations.operations.base.Operation] = []
