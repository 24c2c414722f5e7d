"""Patient search keys: blind indexes of the first name, first name + date of birth, and date of birth.

Adds the columns, then fills them for existing rows: the sources are
decrypted with their own bindings, normalised as the fields normalise them
(security.crypto.normalize) and hashed under the tenant's active index key
(cipher.blind_index), exactly what BlindIndexField.pre_save writes.
Idempotent (only empty indexes are computed), batched by primary key, in the
platform scope so PostgreSQL row-level security admits every tenant's rows.
Backwards drops the columns (the sources are untouched).

Statement numbers need no new key: Statement.number_index already is one.
"""

import uuid
from typing import Any

from django.db import migrations

import security.crypto.fields
from portal.tenancy.context import platform_scope
from security.crypto import cipher
from security.crypto.migration import flush_deferred_constraints, is_token
from security.crypto.normalize import normalizer

LABEL = "billing.Patient"
PURPOSE = "phi"
BATCH = 500
SOURCES = ("first_name", "date_of_birth")
# Index column -> (its sources, their normalisers), as declared on billing.Patient.
INDEXES = {
    "first_name_index": (("first_name",), ("text",)),
    "first_name_dob_index": (("first_name", "date_of_birth"), ("text", "date")),
    "date_of_birth_index": (("date_of_birth",), ("date",)),
}


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


def _index_value(column: str, texts: dict[str, str | None], *, tenant_id: int) -> str:
    sources, normalizers = INDEXES[column]
    parts = [normalizer(name)(texts[source]) for source, name in zip(sources, normalizers, strict=True)]
    if not any(parts):
        return ""
    return cipher.blind_index(tenant_id=tenant_id, index_name=f"{LABEL}.{column}", normalized="\x1f".join(parts))


def _batch(schema_editor: Any, table: str, after: Any) -> list[tuple[Any, ...]]:
    quote = schema_editor.quote_name
    columns = ", ".join(quote(name) for name in ["id", "tenant_id", "public_id", *SOURCES, *INDEXES])
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns} FROM {quote(table)} WHERE {quote('id')} > %s ORDER BY {quote('id')} LIMIT %s",  # noqa: S608  # nosec B608: names from the model
            [after, BATCH],
        )
        return list(cursor.fetchall())


def fill_search_keys(apps: Any, schema_editor: Any) -> None:
    Patient = apps.get_model("billing", "Patient")
    table = Patient._meta.db_table
    quote = schema_editor.quote_name
    after: Any = 0
    with platform_scope():
        while rows := _batch(schema_editor, table, after):
            after = rows[-1][0]
            for pk, tenant_id, public_id, *values in rows:
                stored = dict(zip(INDEXES, values[len(SOURCES) :], strict=True))
                missing = [column for column, value in stored.items() if not value]
                if not missing:
                    continue
                row_id = _row_id(public_id)
                texts = {
                    source: _source_text(value, tenant_id=int(tenant_id), source=source, row_id=row_id)
                    for source, value in zip(SOURCES, values[: len(SOURCES)], strict=True)
                }
                changes = {column: _index_value(column, texts, tenant_id=int(tenant_id)) for column in missing}
                changes = {column: value for column, value in changes.items() if value}
                if not changes:
                    continue
                assignments = ", ".join(f"{quote(column)} = %s" for column in changes)
                with schema_editor.connection.cursor() as cursor:
                    cursor.execute(
                        f"UPDATE {quote(table)} SET {assignments} WHERE {quote('id')} = %s",  # noqa: S608  # nosec B608: names from the model
                        [*changes.values(), pk],
                    )
    flush_deferred_constraints(schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0005_patient_listing"),
    ]

    operations = [
        migrations.AddField(
            model_name="patient",
            name="first_name_index",
            field=security.crypto.fields.BlindIndexField(db_default="", normalizers=["text"], sources=["first_name"]),
        ),
        migrations.AddField(
            model_name="patient",
            name="first_name_dob_index",
            field=security.crypto.fields.BlindIndexField(
                db_default="", normalizers=["text", "date"], sources=["first_name", "date_of_birth"]
            ),
        ),
        migrations.AddField(
            model_name="patient",
            name="date_of_birth_index",
            field=security.crypto.fields.BlindIndexField(
                db_default="", normalizers=["date"], sources=["date_of_birth"]
            ),
        ),
        migrations.RunPython(fill_search_keys, migrations.RunPython.noop, elidable=False),
    ]
