"""Joins the phone payments migration, written beside the statement imports."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0008_phone_payments"),
        ("billing", "0009_merge_statement_imports"),
    ]

    operations: list[migrations.operations.base.Operation] = []
