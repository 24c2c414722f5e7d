"""An event's details are stored as the canonical JSON text its hash covers.

The column becomes `json` on PostgreSQL (audit.fields.CanonicalJSONField),
which keeps text exactly as written; new events are written in the canonical
form, so a COPY of the column yields the bytes the hash covers. Events
already stored keep jsonb's rendering (the type change converts them as
jsonb prints them); the export re-encodes those when it must, as before.

settle_audit_append (0007) took details as jsonb, which would reorder the
keys on the way in; it is replaced by the same function taking json. The
table rewrite of the type change fires no row trigger, so the append-only
triggers (0005) stay as they are.
"""

from __future__ import annotations

import importlib
from typing import Any

from django.db import migrations

import audit.fields

# 0007's function, with details taken as json instead of jsonb.
_0007 = importlib.import_module("audit.migrations.0007_append_function")
_JSONB_PARAMETER = "    p_details jsonb,\n"
assert _0007.APPEND_FUNCTION.count(_JSONB_PARAMETER) == 1
APPEND_FUNCTION = _0007.APPEND_FUNCTION.replace(_JSONB_PARAMETER, "    p_details json,\n")
assert _0007.DROP_APPEND_FUNCTION.count(", jsonb,") == 1
DROP_APPEND_FUNCTION = _0007.DROP_APPEND_FUNCTION.replace(", jsonb,", ", json,")


def forwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_0007.DROP_APPEND_FUNCTION, None)
        schema_editor.execute(APPEND_FUNCTION, None)


def backwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_APPEND_FUNCTION, None)
        schema_editor.execute(_0007.APPEND_FUNCTION, None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0007_append_function")]

    operations = [
        migrations.AlterField(
            model_name="auditevent",
            name="details",
            field=audit.fields.CanonicalJSONField(default=dict),
        ),
        migrations.RunPython(forwards, backwards, elidable=False),
    ]
