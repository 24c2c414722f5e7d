"""Joins the statement imports migration, written beside the adjustments and the other billing work."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0007_statement_imports"),
        ("billing", "0008_merge_adjustments"),
    ]

    operations: list[migrations.operations.base.Operation] = []
