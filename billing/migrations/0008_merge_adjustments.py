"""Joins the adjustments migration, written beside the patient search keys and processor settings."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0007_adjustments"),
        ("billing", "0007_merge_search_keys_refunds"),
    ]

    operations: list[migrations.operations.base.Operation] = []
