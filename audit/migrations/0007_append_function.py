"""settle_audit_append(): one round trip appends an event on PostgreSQL.

The recorder (audit.recorder) used to lock the chain head in one statement
and write the event in a second, computing the hash in Python between the
two. This function does the same steps in the same order, in the database:

1. lock the head row (creating it for a chain's first event, as before);
2. take the event's time: the caller's clock reading, but never earlier than
   the previous event's (the head's updated_at), so that time order follows
   sequence order even when a writer waited for the lock or another
   application server's clock is behind;
3. splice the time, the previous hash and the next sequence into the
   canonical JSON the recorder sent in four pieces
   (audit.chain.canonical_template) and hash it: SHA-256, unpadded base64url,
   exactly audit.chain.event_hash;
4. insert the event, move the head, insert the subject index rows.

The lock is held until the caller's transaction ends, as before. The
function runs as the invoking role (no SECURITY DEFINER), so row-level
security (0006) and the append-only triggers (0005) apply to it unchanged.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

# 'AAAA…' (43 characters) is audit.chain.GENESIS, written out so that this
# migration keeps meaning what it meant when it ran.
APPEND_FUNCTION = r"""
CREATE OR REPLACE FUNCTION settle_audit_append(
    p_chain_key text,
    p_tenant_id bigint,
    p_occurred_at timestamptz,
    p_public_id uuid,
    p_actor_user_id uuid,
    p_actor_role text,
    p_action text,
    p_target_type text,
    p_target_id text,
    p_outcome text,
    p_source_ip inet,
    p_request_id text,
    p_details jsonb,
    p_canonical text[],
    p_subject_kinds text[],
    p_subject_refs text[],
    OUT out_event_id bigint,
    OUT out_chain_id bigint,
    OUT out_sequence bigint,
    OUT out_occurred_at timestamptz,
    OUT out_prev_hash text,
    OUT out_hash text
) LANGUAGE plpgsql AS $fn$
BEGIN
    SELECT c.id, c.last_sequence + 1, c.last_hash, greatest(p_occurred_at, c.updated_at)
    INTO out_chain_id, out_sequence, out_prev_hash, out_occurred_at
    FROM audit_auditchain c WHERE c.key = p_chain_key FOR UPDATE;
    IF NOT FOUND THEN
        -- First event of this chain. Two first writers may race: the loser's
        -- insert waits for the winner's transaction, is then ignored, and
        -- both lock the one row.
        INSERT INTO audit_auditchain (key, tenant_id, last_sequence, last_hash, updated_at)
        VALUES (p_chain_key, p_tenant_id, 0, 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', p_occurred_at)
        ON CONFLICT DO NOTHING;
        SELECT c.id, c.last_sequence + 1, c.last_hash, greatest(p_occurred_at, c.updated_at)
        INTO STRICT out_chain_id, out_sequence, out_prev_hash, out_occurred_at
        FROM audit_auditchain c WHERE c.key = p_chain_key FOR UPDATE;
    END IF;
    out_hash := rtrim(translate(encode(sha256(convert_to(
        p_canonical[1] || to_char(out_occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        || p_canonical[2] || out_prev_hash || p_canonical[3] || out_sequence::text || p_canonical[4],
        'UTF8')), 'base64'), '+/', '-_'), '=');
    INSERT INTO audit_auditevent (
        public_id, chain_id, sequence, tenant_id, occurred_at, actor_user_id, actor_role, action,
        target_type, target_id, outcome, source_ip, request_id, details, prev_hash, hash
    ) VALUES (
        p_public_id, out_chain_id, out_sequence, p_tenant_id, out_occurred_at, p_actor_user_id, p_actor_role,
        p_action, p_target_type, p_target_id, p_outcome, p_source_ip, p_request_id, p_details,
        out_prev_hash, out_hash
    ) RETURNING id INTO out_event_id;
    UPDATE audit_auditchain SET last_sequence = out_sequence, last_hash = out_hash, updated_at = out_occurred_at
    WHERE id = out_chain_id;
    -- In the order given, as bulk_create would insert them on the ORM path.
    INSERT INTO audit_auditeventsubject (event_id, tenant_id, subject_type, subject_id)
    SELECT out_event_id, p_tenant_id, subject.kind, subject.ref
    FROM unnest(p_subject_kinds, p_subject_refs) WITH ORDINALITY AS subject(kind, ref, position)
    ORDER BY subject.position;
END
$fn$;
"""

DROP_APPEND_FUNCTION = (
    "DROP FUNCTION IF EXISTS settle_audit_append("
    "text, bigint, timestamptz, uuid, uuid, text, text, text, text, text, inet, text, jsonb, text[], text[], text[])"
)


def forwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(APPEND_FUNCTION, None)


def backwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_APPEND_FUNCTION, None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0006_row_level_security")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
