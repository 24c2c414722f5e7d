"""The SQL of lean rotation: lock and read one batch of rows, write its new values back.

Raw SQL on purpose: a batch is read as plain tuples of the columns the
rotation needs (no model instances) and written with one statement, because
around the crypto it is the per-row Python work that costs. Table and column
names come from the model's own metadata, never from input.

On PostgreSQL the rows are locked FOR NO KEY UPDATE, the lock an UPDATE of
non-key columns takes anyway: application writes to the same rows wait for
the batch's commit (and so never lose to, or overwrite with, stale values),
while inserts that only reference a row (a statement for a patient) go on.
SQLite locks the whole database for the write; there is nothing to add.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

from django.db import connection

from security.crypto.bulk import ResealedBatch, TablePlan

# A PostgreSQL batch is copied into a temporary table (one per primary-key
# type, emptied at each commit) and applied with one UPDATE ... FROM.
_MAX_STAGED_COLUMNS = 16
# What COPY's text format would need escaped; never in a ciphertext or index.
_COPY_UNSAFE = re.compile(r"[\t\n\r\\]")


def _quote(name: str) -> str:
    return str(connection.ops.quote_name(name))


def _select(plan: TablePlan) -> str:
    names = [plan.pk_column, "tenant_id", plan.row_id_field.column, *plan.columns]
    return f"SELECT {', '.join(_quote(name) for name in names)} FROM {_quote(plan.table)}"  # noqa: S608  # nosec B608: names from the model


def _lock_clause() -> str:
    return " FOR NO KEY UPDATE" if connection.vendor == "postgresql" else ""


def lock_rows_after(
    plan: TablePlan, *, tenant_id: int, after_pk: Any, limit: int, upto_pk: Any = None
) -> list[tuple[Any, ...]]:
    """The next `limit` rows of the tenant after `after_pk` (and up to `upto_pk`), in primary-key order, locked."""
    pk = _quote(plan.pk_column)
    upto, params = (
        ("", [tenant_id, after_pk, limit])
        if upto_pk is None
        else (f" AND {pk} <= %s", [tenant_id, after_pk, upto_pk, limit])
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"{_select(plan)} WHERE tenant_id = %s AND {pk} > %s{upto} ORDER BY {pk} LIMIT %s{_lock_clause()}",
            params,
        )
        return [tuple(row) for row in cursor.fetchall()]


def lock_rows_in(plan: TablePlan, *, tenant_id: int, pks: Sequence[Any]) -> list[tuple[Any, ...]]:
    """The tenant's rows among `pks`, in primary-key order, locked."""
    if not pks:
        return []
    pk = _quote(plan.pk_column)
    placeholders = ", ".join(["%s"] * len(pks))
    with connection.cursor() as cursor:
        cursor.execute(
            f"{_select(plan)} WHERE tenant_id = %s AND {pk} IN ({placeholders}) ORDER BY {pk}{_lock_clause()}",
            [tenant_id, *pks],
        )
        return [tuple(row) for row in cursor.fetchall()]


def write_batch(plan: TablePlan, batch: ResealedBatch, *, tenant_id: int) -> None:
    """Write the batch's new values, one statement (PostgreSQL: COPY + one UPDATE ... FROM)."""
    if not batch.records:
        return
    if connection.vendor == "postgresql":
        _write_postgresql(plan, batch, tenant_id=tenant_id)
    else:
        _write_executemany(plan, batch, tenant_id=tenant_id)


def _write_executemany(plan: TablePlan, batch: ResealedBatch, *, tenant_id: int) -> None:
    assignments = ", ".join(f"{_quote(column)} = %s" for column in batch.columns)
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {_quote(plan.table)} SET {assignments} WHERE {_quote(plan.pk_column)} = %s AND tenant_id = %s",  # noqa: S608  # nosec B608: names from the model
            [[*record[1:], record[0], tenant_id] for record in batch.records],
        )


def _write_postgresql(plan: TablePlan, batch: ResealedBatch, *, tenant_id: int) -> None:
    # Staging columns are positional (v0, v1, ...): one table serves every model.
    staged = [f"v{index}" for index in range(len(batch.columns))]
    assignments = ", ".join(f"{_quote(column)} = s.{name}" for column, name in zip(batch.columns, staged, strict=True))
    with connection.cursor() as cursor:
        staging = _ensure_staging(cursor, plan, len(staged))
        cursor.copy_expert(f"COPY {staging} (pk, {', '.join(staged)}) FROM STDIN", _copy_text(batch.records))
        # The key range lets the planner read only the batch's rows (by the
        # primary key) rather than scan the table: the staging table has no
        # statistics, and a hash join over the whole table costs O(table) per batch.
        pk = _quote(plan.pk_column)
        first, last = min(record[0] for record in batch.records), max(record[0] for record in batch.records)
        cursor.execute(
            f"UPDATE {_quote(plan.table)} AS t SET {assignments} FROM {staging} AS s "  # noqa: S608  # nosec B608: names from the model
            f"WHERE t.{pk} = s.pk AND t.tenant_id = %s AND t.{pk} BETWEEN %s AND %s",
            [tenant_id, first, last],
        )
        # Emptied now rather than at commit: a second batch in one transaction starts clean.
        cursor.execute(f"DELETE FROM {staging}")  # noqa: S608  # nosec B608: our own table


def _ensure_staging(cursor: Any, plan: TablePlan, width: int) -> str:
    if width > _MAX_STAGED_COLUMNS:
        raise ValueError(f"a rotation rewrites at most {_MAX_STAGED_COLUMNS} columns of one model")
    pk_field = plan.model._meta.pk
    assert pk_field is not None
    pk_type = str(pk_field.rel_db_type(connection))
    name = "settle_rotation_" + re.sub(r"[^a-z0-9]+", "_", pk_type.lower())
    columns = ", ".join(f"v{index} text" for index in range(_MAX_STAGED_COLUMNS))
    cursor.execute(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {name} (pk {pk_type} PRIMARY KEY, {columns}) ON COMMIT DELETE ROWS"
    )
    return name


def _copy_text(records: Sequence[tuple[Any, ...]]) -> io.StringIO:
    # COPY's text format. Ciphertexts and blind indexes are url-safe base64
    # and colons, so only a NULL needs spelling out; anything else is refused
    # rather than escaped, since nothing else belongs in these columns.
    lines = []
    for record in records:
        fields = [str(record[0])]
        for value in record[1:]:
            if value is None:
                fields.append("\\N")
            elif _COPY_UNSAFE.search(value):
                raise ValueError("a re-sealed value holds a character COPY would need escaped")
            else:
                fields.append(value)
        lines.append("\t".join(fields))
    return io.StringIO("\n".join(lines) + "\n")
