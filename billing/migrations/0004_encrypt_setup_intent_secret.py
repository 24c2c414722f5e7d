"""Seal Checkout.setup_intent_client_secret with the tenant's "secret" data key.

The column type stays text; existing clear values are sealed in place
(idempotent), and backwards opens them again.
"""

from django.db import migrations

import security.crypto.fields
from security.crypto.migration import seal_existing_rows


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0003_encrypt_phi"),
    ]

    operations = [
        migrations.AlterField(
            model_name="checkout",
            name="setup_intent_client_secret",
            field=security.crypto.fields.EncryptedTextField(blank=True, max_length=255, purpose="secret"),
        ),
        seal_existing_rows("billing", "Checkout", fields={"setup_intent_client_secret": ("text", "secret")}),
    ]
