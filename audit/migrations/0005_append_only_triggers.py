"""PostgreSQL refuses UPDATE, DELETE and TRUNCATE on the audit tables.

See docs/decisions/0004-audit-append-only.md. In short:

- UPDATE is always refused.
- DELETE is refused, except retention: an event (or its subject index row)
  that an archive segment already covers and that is older than 90 days may
  leave the hot table (audit.services.archive). Nothing younger can ever be
  deleted, whatever the archive table says.
- TRUNCATE is refused, except in a database whose name starts with "test_"
  on a session that set `settle.audit_test_truncate` to "on": pytest-django
  empties tables with TRUNCATE after transactional tests. audit.apps sets it
  only on connections to such databases.
- An archive segment is accepted only if its first and last hashes are the
  hashes of the events it claims to cover.

SQLite (the embedded default) gets no triggers: the hash chain and signed
checkpoints still detect any change there.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

REFUSE_FUNCTION = r"""
CREATE OR REPLACE FUNCTION settle_audit_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        IF current_database() LIKE 'test\_%'
           AND coalesce(current_setting('settle.audit_test_truncate', true), '') = 'on' THEN
            RETURN NULL;
        END IF;
        RAISE EXCEPTION 'audit table % is append-only: TRUNCATE refused', TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_auditevent' THEN
        IF OLD.occurred_at < now() - interval '90 days' AND EXISTS (
            SELECT 1 FROM audit_auditarchivesegment s
            WHERE s.chain_id = OLD.chain_id AND OLD.sequence BETWEEN s.first_sequence AND s.last_sequence
        ) THEN
            RETURN OLD;
        END IF;
    END IF;
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_auditeventsubject' THEN
        IF EXISTS (
            SELECT 1 FROM audit_auditevent e
            JOIN audit_auditarchivesegment s
              ON s.chain_id = e.chain_id AND e.sequence BETWEEN s.first_sequence AND s.last_sequence
            WHERE e.id = OLD.event_id AND e.occurred_at < now() - interval '90 days'
        ) THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$fn$;
"""

SEGMENT_CHECK_FUNCTION = r"""
CREATE OR REPLACE FUNCTION settle_audit_check_segment() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM audit_auditevent e WHERE e.chain_id = NEW.chain_id
                   AND e.sequence = NEW.last_sequence AND e.hash = NEW.last_hash)
       OR NOT EXISTS (SELECT 1 FROM audit_auditevent e WHERE e.chain_id = NEW.chain_id
                   AND e.sequence = NEW.first_sequence AND e.prev_hash = NEW.first_prev_hash) THEN
        RAISE EXCEPTION 'archive segment does not match the events it claims to cover'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$fn$;
"""

APPEND_ONLY_TABLES = (
    "audit_auditevent",
    "audit_auditeventsubject",
    "audit_auditcheckpoint",
    "audit_auditarchivesegment",
)


def _forwards_sql() -> list[str]:
    statements = [REFUSE_FUNCTION, SEGMENT_CHECK_FUNCTION]
    for table in APPEND_ONLY_TABLES:
        statements += [
            f'CREATE TRIGGER settle_audit_no_change BEFORE UPDATE OR DELETE ON "{table}" '
            "FOR EACH ROW EXECUTE FUNCTION settle_audit_refuse_change()",
            f'CREATE TRIGGER settle_audit_no_truncate BEFORE TRUNCATE ON "{table}" '
            "FOR EACH STATEMENT EXECUTE FUNCTION settle_audit_refuse_change()",
        ]
    statements.append(
        'CREATE TRIGGER settle_audit_segment_matches BEFORE INSERT ON "audit_auditarchivesegment" '
        "FOR EACH ROW EXECUTE FUNCTION settle_audit_check_segment()"
    )
    return statements


def _backwards_sql() -> list[str]:
    statements = ['DROP TRIGGER IF EXISTS settle_audit_segment_matches ON "audit_auditarchivesegment"']
    for table in APPEND_ONLY_TABLES:
        statements += [
            f'DROP TRIGGER IF EXISTS settle_audit_no_change ON "{table}"',
            f'DROP TRIGGER IF EXISTS settle_audit_no_truncate ON "{table}"',
        ]
    statements += [
        "DROP FUNCTION IF EXISTS settle_audit_refuse_change()",
        "DROP FUNCTION IF EXISTS settle_audit_check_segment()",
    ]
    return statements


def forwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for statement in _forwards_sql():
        schema_editor.execute(statement, None)


def backwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for statement in _backwards_sql():
        schema_editor.execute(statement, None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0004_chain_constraints")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
