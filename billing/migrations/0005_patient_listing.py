"""Patient.listing: the columns patient lists show, sealed as one value per row.

Adds the column, then fills it for existing rows: each source is decrypted
with its own binding and the projection is sealed for (tenant, billing.Patient,
listing, public id), exactly what EncryptedProjectionField.pre_save writes
(security.crypto.projection.projection_plaintext). Idempotent (rows that already
hold a ciphertext are kept), batched by primary key, in the platform scope so
PostgreSQL row-level security admits every tenant's rows. Backwards drops the
column (the sources are untouched).
"""

import uuid
from typing import Any

from django.db import migrations

import security.crypto.projection
from portal.tenancy.context import platform_scope
from security.crypto import cipher
from security.crypto.projection import projection_plaintext
from security.crypto.migration import flush_deferred_constraints, is_token

LABEL = "billing.Patient"
FIELD = "listing"
PURPOSE = "phi"
BATCH = 500


def _row_id(raw: Any) -> str:
    # The live fields bind str(uuid.UUID): SQLite hands the column back as 32 hex digits.
    return str(raw if isinstance(raw, uuid.UUID) else uuid.UUID(str(raw)))


def _source_text(value: Any, *, tenant_id: int, source: str, row_id: str) -> str | None:
    """The plaintext of one source as its field seals it (text), or None."""
    if value is None:
        return None
    if not is_token(value):  # never sealed (a row written before 0003 ran): the column holds the text
        return value.isoformat() if hasattr(value, "isoformat") else str(value)
    binding = cipher.Binding(tenant_id=tenant_id, model_label=LABEL, field_name=source, row_id=row_id)
    return cipher.open_(value, binding=binding, purpose=PURPOSE).decode()


def _batch(schema_editor: Any, table: str, sources: list[str], after: Any) -> list[tuple[Any, ...]]:
    quote = schema_editor.quote_name
    columns = ", ".join(quote(name) for name in ["id", "tenant_id", "public_id", FIELD, *sources])
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns} FROM {quote(table)} WHERE {quote('id')} > %s ORDER BY {quote('id')} LIMIT %s",  # noqa: S608  # nosec B608: names from the model
            [after, BATCH],
        )
        return list(cursor.fetchall())


def fill_listing(apps: Any, schema_editor: Any) -> None:
    Patient = apps.get_model("billing", "Patient")
    table = Patient._meta.db_table
    sources = list(Patient._meta.get_field(FIELD).sources)
    quote = schema_editor.quote_name
    update = f"UPDATE {quote(table)} SET {quote(FIELD)} = %s WHERE {quote('id')} = %s"  # noqa: S608  # nosec B608
    after: Any = 0
    with platform_scope():
        while rows := _batch(schema_editor, table, sources, after):
            after = rows[-1][0]
            for pk, tenant_id, public_id, stored, *values in rows:
                if is_token(stored):
                    continue
                row_id = _row_id(public_id)
                texts = {
                    source: _source_text(value, tenant_id=int(tenant_id), source=source, row_id=row_id)
                    for source, value in zip(sources, values, strict=True)
                }
                binding = cipher.Binding(tenant_id=int(tenant_id), model_label=LABEL, field_name=FIELD, row_id=row_id)
                token = cipher.seal(projection_plaintext(texts), binding=binding, purpose=PURPOSE)
                with schema_editor.connection.cursor() as cursor:
                    cursor.execute(update, [token, pk])
    flush_deferred_constraints(schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0004_encrypt_setup_intent_secret"),
    ]

    operations = [
        migrations.AddField(
            model_name="patient",
            name="listing",
            field=security.crypto.projection.EncryptedProjectionField(
                sources=["first_name", "last_name", "date_of_birth", "account_number", "phone"]
            ),
        ),
        migrations.RunPython(fill_listing, migrations.RunPython.noop, elidable=False),
    ]
