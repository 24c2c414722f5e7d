"""Migration operations that convert existing plaintext columns to ciphertext (and back).

    seal_existing_rows(
        "billing", "Patient",
        fields={"first_name": ("text", "phi"), "date_of_birth": ("date", "phi")},
        indexes={"name_dob_index": (("last_name", "date_of_birth"), ("text", "date"))},
    )

Runs after the AlterField operations that turned the columns into text. Works
on raw rows (the historical model's table and columns), so it does not depend
on the model class of the day; the encryption itself is the live
security.crypto code, so the result is exactly what the fields produce.

Forwards is idempotent (a value that already parses as a ciphertext is kept),
batched, and runs in the platform scope so PostgreSQL row-level security
admits every tenant's rows. Backwards decrypts to plaintext again (blind
indexes are left for the reverse AddField to drop).

It needs the master key (or KMS) of the environment: with none, it stops with
KeyUnavailableError before writing anything of the failing row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import migrations

from portal.tenancy.context import platform_scope
from security.crypto import cipher
from security.crypto.errors import MalformedCiphertextError
from security.crypto.normalize import normalizer

BATCH = 500

FieldSpec = Mapping[str, tuple[str, str]]  # column -> (kind: text|date|json, purpose)
IndexSpec = Mapping[str, tuple[Sequence[str], Sequence[str]]]  # column -> (sources, normalisers)


def is_token(value: Any) -> bool:
    """Whether a stored column value is already a ciphertext (kept as is by forwards)."""
    if not isinstance(value, str) or not value.startswith(f"{cipher.FORMAT}:"):
        return False
    try:
        cipher.parse(value)
    except MalformedCiphertextError:
        return False
    return True


def _plaintext_text(kind: str, value: Any) -> str:
    # The same text the fields encrypt: dates as ISO, text as is (json is already text).
    if kind == "date" and not isinstance(value, str):
        return str(value.isoformat())
    return str(value)


def _rows(schema_editor: Any, table: str, columns: Sequence[str]) -> list[tuple[Any, ...]]:
    quote = schema_editor.quote_name
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(quote(c) for c in columns)} FROM {quote(table)} ORDER BY {quote('id')}")  # noqa: S608  # nosec B608: names from the model
        return list(cursor.fetchall())


def _update(schema_editor: Any, table: str, pk: Any, changes: Mapping[str, Any]) -> None:
    if not changes:
        return
    quote = schema_editor.quote_name
    assignments = ", ".join(f"{quote(column)} = %s" for column in changes)
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(table)} SET {assignments} WHERE {quote('id')} = %s",  # noqa: S608  # nosec B608: names from the model
            [*changes.values(), pk],
        )


def flush_deferred_constraints(schema_editor: Any) -> None:
    """Check deferred foreign keys now, so the migration's next ALTER TABLE is allowed.

    PostgreSQL refuses to alter a table with pending (deferred) trigger events,
    which every UPDATE of a row with a deferrable foreign key leaves behind.
    """
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def seal_existing_rows(
    app_label: str,
    model_name: str,
    *,
    fields: FieldSpec,
    indexes: IndexSpec | None = None,
    row_id_field: str = "public_id",
) -> migrations.RunPython:
    indexes = dict(indexes or {})
    label = f"{app_label}.{model_name}"

    def forwards(apps: Any, schema_editor: Any) -> None:
        model = apps.get_model(app_label, model_name)
        table = model._meta.db_table
        columns = ["id", "tenant_id", row_id_field, *fields]
        with platform_scope():
            for row in _rows(schema_editor, table, columns):
                pk, tenant_id, row_id = row[0], row[1], row[2]
                values = dict(zip(fields, row[3:], strict=True))
                plaintexts: dict[str, Any] = {}
                changes: dict[str, Any] = {}
                for column, (kind, purpose) in fields.items():
                    value = values[column]
                    if value is None:
                        plaintexts[column] = None
                        continue
                    binding = cipher.Binding(
                        tenant_id=int(tenant_id), model_label=label, field_name=column, row_id=str(row_id)
                    )
                    if is_token(value):
                        plaintexts[column] = cipher.open_(value, binding=binding, purpose=purpose).decode()
                        continue
                    text = _plaintext_text(kind, value)
                    plaintexts[column] = text
                    changes[column] = cipher.seal(text.encode(), binding=binding, purpose=purpose)
                for column, (sources, normalizers) in indexes.items():
                    parts = [
                        normalizer(name)(plaintexts.get(source))
                        for source, name in zip(sources, normalizers, strict=True)
                    ]
                    normalized = "\x1f".join(parts) if any(parts) else ""
                    changes[column] = (
                        cipher.blind_index(
                            tenant_id=int(tenant_id), index_name=f"{label}.{column}", normalized=normalized
                        )
                        if normalized
                        else ""
                    )
                _update(schema_editor, table, pk, changes)
        flush_deferred_constraints(schema_editor)

    def backwards(apps: Any, schema_editor: Any) -> None:
        model = apps.get_model(app_label, model_name)
        table = model._meta.db_table
        columns = ["id", "tenant_id", row_id_field, *fields]
        with platform_scope():
            for row in _rows(schema_editor, table, columns):
                pk, tenant_id, row_id = row[0], row[1], row[2]
                changes: dict[str, Any] = {}
                for column, value in zip(fields, row[3:], strict=True):
                    if not is_token(value):
                        continue
                    binding = cipher.Binding(
                        tenant_id=int(tenant_id), model_label=label, field_name=column, row_id=str(row_id)
                    )
                    changes[column] = cipher.open_(value, binding=binding, purpose=fields[column][1]).decode()
                _update(schema_editor, table, pk, changes)
        flush_deferred_constraints(schema_editor)

    return migrations.RunPython(forwards, backwards, elidable=False)
