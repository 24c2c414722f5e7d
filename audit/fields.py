"""An event's details column: stored as the very text its hash covers.

PostgreSQL's jsonb normalises what it stores: keys ordered by length and
then by bytes, ", " and ": " between items. The canonical JSON of the hash
chain (audit.chain) orders keys by name and has no spaces. So the export
could not copy a stored jsonb value into an event's canonical bytes; it had
to re-encode details with more than one key, row by row in Python (3-4 µs
each, several times the rest of the export's work on such a row).

CanonicalJSONField stores details in a `json` column (PostgreSQL keeps json
text exactly as given) written in the canonical form, so a COPY of the
column yields the canonical bytes. SQLite keeps text as it always did.
Values read back are parsed from the stored text, never from a driver's own
decoding: psycopg2 decodes json by default, and would hand over a JSON
string that reads as an object ("{}") the same as the object, hiding a
change from verification. register_raw_json undoes that on each new
PostgreSQL connection.
"""

from __future__ import annotations

from typing import Any

import psycopg2.extras
from django.db import models
from django.db.models.fields.json import KeyTransform, KeyTransformFactory

from audit.chain import canonical_json


class _JsonbKeyTransform(KeyTransform):
    """`details__key` on PostgreSQL: json has no equality operator, so the keys are read as jsonb."""

    def preprocess_lhs(self, compiler: Any, connection: Any) -> Any:
        lhs, params, keys = super().preprocess_lhs(compiler, connection)
        if connection.vendor == "postgresql":
            lhs = f"({lhs})::jsonb"
        return lhs, params, keys


class _JsonbKeyTransformFactory(KeyTransformFactory):
    def __call__(self, *args: Any, **kwargs: Any) -> KeyTransform:
        return _JsonbKeyTransform(self.key_name, *args, **kwargs)


class CanonicalJSONField(models.JSONField):
    """A JSONField stored as canonical JSON text. Key lookups (`details__via="cli"`) work;
    lookups on the whole value (`details={...}`, `details__contains`) do not on PostgreSQL."""

    def db_type(self, connection: Any) -> str | None:
        if connection.vendor == "postgresql":
            return "json"
        return super().db_type(connection)

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if not prepared:
            value = self.get_prep_value(value)
        if value is None or hasattr(value, "as_sql"):
            return value
        # Plain text: PostgreSQL takes it as json (never through jsonb, which
        # would reorder the keys), SQLite as text.
        return canonical_json(value)

    def get_transform(self, name: str) -> Any:
        transform = super().get_transform(name)
        if isinstance(transform, KeyTransformFactory):
            return _JsonbKeyTransformFactory(name)
        return transform


def register_raw_json(sender: Any, connection: Any, **kwargs: Any) -> None:
    """Hand json column values to the field as text (connection_created receiver)."""
    if connection.vendor == "postgresql":
        psycopg2.extras.register_default_json(conn_or_curs=connection.connection, loads=lambda text: text)
