"""The PostgreSQL COPY fast path of exports: exact, tamper-evident, scoped.

Every test compares the fast path (write_chain_segment on PostgreSQL) with
the per-record path (write_segment over the ORM) on the same chain: the
JSONL, the CSV, the statistics and the verification problems must be
identical, whatever the rows hold.
"""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from django.db import connection

from audit.chain import GENESIS, event_hash, format_time
from audit.exportcopy import canonical_time_sql, column_sql, select_list
from audit.exportformat import Filters
from audit.models import AuditChain, AuditEvent
from audit.recorder import audit_record
from audit.services import segments
from audit.services.integrity import chain_events, checkpoint_sign, checkpoints_of
from audit.signing import current_signer
from portal.tenancy.context import RLS_SETTING_NAME, tenant_scope
from tests.audit.conftest import fill, segment_both_ways

pytestmark = pytest.mark.django_db


def _assert_same(outputs: list[Any]) -> Any:
    (fast_jsonl, fast_csv, fast), (slow_jsonl, slow_csv, slow) = outputs
    assert fast_jsonl == slow_jsonl
    assert fast_csv == slow_csv
    assert (fast.events, fast.links, fast.sha256, fast.last_hash) == (
        slow.events,
        slow.links,
        slow.sha256,
        slow.last_hash,
    )
    assert (fast.by_action, fast.by_outcome, fast.by_role) == (slow.by_action, slow.by_outcome, slow.by_role)
    assert fast.verification.problems == slow.verification.problems
    assert fast.verification.summary() == slow.verification.summary()
    return fast


@pytest.fixture
def orm_reads(monkeypatch) -> list[int]:
    """Sequences the fast path had to read through the ORM (the per-record path)."""
    reads: list[int] = []
    record_at = segments._record_at

    def counting(chain, sequence):
        reads.append(sequence)
        return record_at(chain, sequence)

    monkeypatch.setattr(segments, "_record_at", counting)
    return reads


def _rewrite(tamper, chain: AuditChain, changes: dict[int, dict[str, Any]], *, rechain: bool) -> None:
    """Change columns behind the app's back; with rechain, recompute every hash (a valid chain)."""
    with tamper() as run:
        for sequence, columns in changes.items():
            for column, value in columns.items():
                run(
                    f'UPDATE audit_auditevent SET "{column}" = %s WHERE chain_id = %s AND sequence = %s',  # noqa: S608
                    [value, chain.pk, sequence],
                )
        if rechain:
            prev = GENESIS
            for record in list(chain_events(chain)):
                record["prev_hash"] = prev
                prev = event_hash(record)
                run(
                    "UPDATE audit_auditevent SET prev_hash = %s, hash = %s WHERE chain_id = %s AND sequence = %s",
                    [record["prev_hash"], prev, chain.pk, record["sequence"]],
                )


@pytest.mark.postgres
def test_postgresql_renders_times_as_format_time_writes_them_in_any_session_time_zone():
    times = [
        "2026-01-01 00:00:00.001+00",
        "2026-01-01 00:00:01+00",  # a zero fraction: the plain text form has no ".000000"
        "2026-12-31 23:59:59.999999+00",
        "2026-06-01 01:00:00.5+01",  # stored from another offset
        "1000-01-01 00:00:00+00",
    ]
    expression = canonical_time_sql('"occurred_at"')
    assert expression in select_list(connection.ops.quote_name)
    values = ", ".join(f"('{time}'::timestamptz)" for time in times)
    with connection.cursor() as cursor:
        cursor.execute("SET TIME ZONE 'America/New_York'")
        try:
            cursor.execute(f'SELECT {expression} FROM (VALUES {values}) AS t("occurred_at")')  # noqa: S608
            rendered = [row[0] for row in cursor.fetchall()]
            # Before the Christian era to_char's year would drop the era: the plain text is used instead.
            cursor.execute(
                f"SELECT {expression} FROM (VALUES ('2026-01-01 00:00:00+00 BC'::timestamptz)) AS t(\"occurred_at\")"
            )  # noqa: S608
            before_christ = cursor.fetchone()[0]
        finally:
            cursor.execute("SET TIME ZONE 'UTC'")
    expected = [format_time(datetime.fromisoformat(time)).removesuffix("Z") for time in times]
    assert rendered == expected
    assert "BC" in before_christ and not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}", before_christ)


@pytest.mark.postgres
def test_whole_seconds_nulls_and_actors_stay_on_the_fast_path(clinic_a, orm_reads):
    tenant = clinic_a.tenant
    with tenant_scope(tenant):
        with time_machine.travel(datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC), tick=False):
            fill(tenant, 2)  # a zero fraction of a second: PostgreSQL prints no ".000000"
        audit_record(
            action="receipt.viewed",
            tenant=tenant,
            actor=clinic_a.user("billing_manager"),
            actor_role="billing_manager",
            target_type="receipt",
            target_id="R-9",
            source_ip="192.0.2.7",
            details={"b": ["x", "y"], "a": 1, "flag": True, "none": None},
        )
        chain = AuditChain.objects.get(tenant=tenant)
        fast = _assert_same(segment_both_ways(chain, with_csv=True))
    assert fast.verification.ok and fast.events == 3
    assert orm_reads == []


@pytest.mark.postgres
@pytest.mark.parametrize(
    "original, stored",
    [
        ({"k": "a,b"}, '{"k": "a, b"}'),  # a space added inside a string value
        ({"a:b": "x"}, '{"a: b": "x"}'),  # ... inside a key
        ({"k": "x"}, '{"k": "x", "l": "y"}'),  # a key added
    ],
    ids=["value", "key", "added"],
)
def test_a_changed_details_value_is_reported_exactly_as_the_record_path_does(
    clinic_a, tamper, orm_reads, original, stored
):
    """Compacting jsonb's ", " and ": " must never also compact a string, or a tampered row would pass."""
    tenant = clinic_a.tenant
    with tenant_scope(tenant):
        fill(tenant, 3)
        fill(tenant, 1, details=original)
        fill(tenant, 2)
        chain = AuditChain.objects.get(tenant=tenant)
        _rewrite(tamper, chain, {4: {"details": stored}}, rechain=False)
        fast = _assert_same(segment_both_ways(chain))
    assert not fast.verification.ok and fast.verification.first_bad_sequence == 4
    assert orm_reads == [4]


@pytest.mark.postgres
@pytest.mark.parametrize("rechain", [True, False], ids=["rewritten-valid-chain", "tampered-chain"])
def test_quotes_backslashes_and_other_zones_of_values(clinic_a, tamper, orm_reads, rechain):
    tenant = clinic_a.tenant
    with tenant_scope(tenant):
        fill(tenant, 8)
        chain = AuditChain.objects.get(tenant=tenant)
        changes: dict[int, dict[str, Any]] = {
            2: {"request_id": 'say "hi"'},
            3: {"target_id": "back\\slash"},
            4: {"target_id": "tab\there"},
            5: {"occurred_at": "2026-01-01 00:00:00.5+01"},
            6: {"source_ip": "10.0.0.0/8"},
            7: {"target_id": "caf\u00e9"},
        }
        _rewrite(tamper, chain, changes, rechain=rechain)
        fast = _assert_same(segment_both_ways(chain, filters=Filters(target_type="receipt"), with_csv=True))
    assert fast.verification.ok is rechain
    if rechain:
        # Quotes, escapes, non-ASCII text and a network with a mask (the record
        # path writes null for it) leave the fast path; a time stored with
        # another offset stays on it (PostgreSQL prints it in UTC).
        assert sorted(set(orm_reads)) == [2, 3, 4, 6, 7]


@pytest.mark.postgres
def test_rows_for_the_record_path_wait_until_the_copy_has_ended(clinic_a, tamper, orm_reads, monkeypatch):
    """Small COPY statements and blocks: rows read through the ORM mid-stream, checkpoints, progress."""
    monkeypatch.setattr(segments, "COPY_CHUNK", 7)
    monkeypatch.setattr(segments, "COPY_BLOCK", 600)
    tenant = clinic_a.tenant
    with tenant_scope(tenant):
        fill(tenant, 10)
        chain = AuditChain.objects.get(tenant=tenant)
        checkpoint_sign(chain=chain)
        fill(tenant, 12)
        _rewrite(
            tamper,
            chain,
            {3: {"target_id": "x\\y"}, 9: {"action": "auth.login"}, 16: {"target_id": "q\\"}},
            rechain=False,
        )
        done: list[int] = []
        last = AuditChain.objects.get(pk=chain.pk).last_sequence
        monkeypatch.setattr(segments, "COPY_CHUNK", 7)
        fast = _assert_same(segment_both_ways(chain, with_csv=False))
        segments.write_chain_segment(
            chain=chain,
            first=1,
            last=last,
            jsonl=io.BytesIO(),
            csv_sink=None,
            header={"chain": chain.key},
            start_prev_hash=GENESIS,
            checkpoints=checkpoints_of(chain),
            filters=Filters(),
            signer=current_signer(),
            progress=done.append,
        )
    assert [p.sequence for p in fast.verification.problems] == [3, 9, 16]
    assert set(orm_reads) == {3, 9, 16}
    assert done == sorted(done) and done[-1] == last and len(done) >= last // 7


@pytest.mark.postgres
def test_the_copy_runs_in_the_callers_row_level_security_scope(clinic_a, clinic_b):
    """As an ordinary role under a forced tenant policy, the COPY sees what the ORM sees."""
    with tenant_scope(clinic_a.tenant):
        fill(clinic_a.tenant, 5)
        chain = AuditChain.objects.get(tenant=clinic_a.tenant)
    with tenant_scope(clinic_b.tenant):
        fill(clinic_b.tenant, 2)
    admits = (
        f"(current_setting('{RLS_SETTING_NAME}', true) = '*' "
        f"OR tenant_id::text = current_setting('{RLS_SETTING_NAME}', true))"
    )
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # ALTER TABLE refuses pending trigger events
        cursor.execute("CREATE ROLE settle_export_probe NOLOGIN")
        cursor.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO settle_export_probe")
        cursor.execute("ALTER TABLE audit_auditevent ENABLE ROW LEVEL SECURITY")
        cursor.execute("ALTER TABLE audit_auditevent FORCE ROW LEVEL SECURITY")
        cursor.execute(f"CREATE POLICY settle_export_probe ON audit_auditevent USING {admits}")
        cursor.execute("SET LOCAL ROLE settle_export_probe")
    try:
        with tenant_scope(clinic_a.tenant):
            own = _assert_same(segment_both_ways(chain))
        with tenant_scope(clinic_b.tenant):
            other = _assert_same(segment_both_ways(chain, last=5))
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
    assert own.verification.ok and own.events == 5
    # In another tenant's scope the policy hides every row from the COPY as from the ORM.
    assert other.events == 0 and other.verification.events_checked == 0


def test_sqlite_keeps_the_record_path(clinic_a, monkeypatch):
    if connection.vendor == "postgresql":
        monkeypatch.setattr(connection, "vendor", "sqlite")
    tenant = clinic_a.tenant
    with tenant_scope(tenant):
        fill(tenant, 4)
        chain = AuditChain.objects.get(tenant=tenant)
        monkeypatch.setattr(segments, "copy_segment_rows", _no_copy)
        (jsonl, _, stats), _ = segment_both_ways(chain)
    assert stats.verification.ok and stats.events == 4
    assert [json.loads(line)["type"] for line in jsonl.splitlines()][1:-1] == ["event"] * 4
    assert AuditEvent.objects.filter(chain=chain).count() == 4


def _no_copy(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("the COPY path ran outside PostgreSQL")


@pytest.mark.postgres
def test_chunks_stream_in_index_order_and_the_sessions_settings_come_back(clinic_a):
    """A sort would hold back a chunk's first row until the whole chunk is sorted."""
    tenant = clinic_a.tenant
    with tenant_scope(tenant):
        fill(tenant, 30)
        chain = AuditChain.objects.get(tenant=tenant)
    with connection.cursor() as cursor:
        explain = "EXPLAIN " + cursor.cursor.mogrify(segments.chunk_select(), (chain.pk, 1, 50_001)).decode()
        cursor.execute("SET enable_bitmapscan = off")  # a session's own choice, to be kept
        # Make random reads look dear, as a big, interleaved table does: unasked, the planner sorts.
        cursor.execute("SET random_page_cost = 1000")
        cursor.execute(explain)
        assert "Sort" in "\n".join(row[0] for row in cursor.fetchall())
        with segments.streaming_in_index_order(cursor):
            cursor.execute(explain)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("SELECT current_setting('enable_sort'), current_setting('enable_bitmapscan')")
        restored = cursor.fetchone()
        cursor.execute("RESET enable_bitmapscan")
        cursor.execute("RESET random_page_cost")
    assert "Sort" not in plan and "Index Scan using audit_event_chain_sequence" in plan, plan
    assert restored == ("on", "off")


@pytest.mark.postgres
def test_uuids_and_addresses_come_as_the_json_of_what_copy_would_print():
    """Quoted output-function text, or null: a network keeps its mask, a host gets none (::text adds /32)."""
    quote = connection.ops.quote_name
    cases = [
        ("source_ip", "inet", ["192.0.2.7", "10.0.0.0/8", "2001:DB8::1", "::ffff:10.1.2.3", None]),
        ("actor_user_id", "uuid", ["7C9E6679-7425-40DE-944B-E07FC1F90AE7", None]),
    ]
    with connection.cursor() as cursor:
        for name, sql_type, values in cases:
            expression = column_sql(name, quote)
            assert expression in select_list(quote)
            for value in values:
                cursor.execute(
                    f"SELECT {expression}, {quote(name)} FROM (VALUES (%s::{sql_type})) AS t({quote(name)})",  # noqa: S608
                    [value],
                )
                rendered, printed = cursor.fetchone()
                assert rendered == (f'"{printed}"' if printed is not None else "null"), (name, value)
                if value == "192.0.2.7":
                    assert rendered == '"192.0.2.7"'
