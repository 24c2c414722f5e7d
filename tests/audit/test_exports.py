"""Exports: built in the background, encrypted at rest, single-use links, verifiable offline."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from audit import conf
from audit.chain import digest_text
from audit.exportformat import Filters
from audit.models import AuditChain, AuditEvent, AuditExport, ExportStatus
from audit.services.exports import _file_path, export_build, export_read_all, export_request
from audit.services.integrity import checkpoint_sign
from audit.signing import ProviderSigner
from portal.tenancy.context import tenant_scope
from security.crypto.providers import get_signing_provider
from security.models import Membership, Role
from tests.audit.conftest import fill, run_verifier, segment_both_ways
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

OFFICER = Role.COMPLIANCE_OFFICER.value
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _export_dir(settings, tmp_path):
    settings.SETTLE_AUDIT_EXPORT_DIR = str(tmp_path / "exports")


@pytest.fixture
def key_file(tmp_path) -> str:
    """The provider's public signing key, as a compliance officer pins it (manage.py audit_signing_key)."""
    path = tmp_path / "audit-signing.pem"
    path.write_text(ProviderSigner(get_signing_provider()).public_key.pem())
    return str(path)


def _range() -> tuple[datetime, datetime]:
    now = datetime.now(tz=UTC)
    return now - timedelta(days=1), now + timedelta(days=1)


def _build(clinic, filters: Filters | None = None) -> AuditExport:
    start, end = _range()
    with tenant_scope(clinic.tenant):
        export = AuditExport.objects.create(
            tenant=clinic.tenant, date_from=start, date_to=end, filters=(filters or Filters()).as_dict()
        )
        return export_build(export=export)


def _jsonl(clinic, export) -> bytes:
    with tenant_scope(clinic.tenant):
        return export_read_all(export=export, kind="jsonl")


def test_officer_requests_downloads_once_and_the_file_verifies_offline(
    clinic_a, django_capture_on_commit_callbacks, tmp_path, key_file
):
    fill(clinic_a.tenant, 25)
    checkpoint_sign(chain=AuditChain.objects.get(tenant=clinic_a.tenant))
    fill(clinic_a.tenant, 5)
    officer = clinic_a.client_as(OFFICER)
    today = datetime.now(tz=UTC).date()
    with django_capture_on_commit_callbacks(execute=True):
        response = officer.post(
            reverse("audit:exports"), {"date_from": today.isoformat(), "date_to": today.isoformat()}
        )
    assert response.status_code == 302
    detail = officer.get(response["Location"])
    assert "Ready" in detail.content.decode()
    with tenant_scope(clinic_a.tenant):
        export = AuditExport.objects.get()
    assert export.status == ExportStatus.READY and export.matched_events >= 30
    link = officer.post(reverse("audit:export-download", kwargs={"export_id": export.public_id}), {"file": "jsonl"})
    assert link.status_code == 302
    download = officer.get(link["Location"])
    assert download.status_code == 200
    assert download["Cache-Control"] == "no-store"
    data = b"".join(download.streaming_content)
    code, output = run_verifier(tmp_path, data, "--public-key", key_file, "--require-signatures")
    assert code == 0, output
    assert "intact" in output and "1 signed checkpoints agree" in output
    # The link works once.
    again = officer.get(link["Location"])
    assert again.status_code == 410
    actions = list(
        AuditEvent.objects.filter(action__startswith="audit.export")
        .values_list("action", "outcome")
        .order_by("sequence")
    )
    assert actions == [
        ("audit.export_requested", "success"),
        ("audit.export_built", "success"),
        ("audit.export_link_created", "success"),
        ("audit.export_downloaded", "success"),
        ("audit.export_downloaded", "denied"),
    ]


def test_links_belong_to_the_officer_who_asked_and_expire(clinic_a):
    fill(clinic_a.tenant, 3)
    export = _build(clinic_a)
    officer = clinic_a.client_as(OFFICER)
    colleague = UserFactory(email="second-officer@alpha.example")
    with tenant_scope(clinic_a.tenant):
        Membership.objects.create(tenant=clinic_a.tenant, user=colleague, role=Role.COMPLIANCE_OFFICER)
    link = officer.post(reverse("audit:export-download", kwargs={"export_id": export.public_id}), {"file": "csv"})[
        "Location"
    ]
    assert clinic_a.client(colleague).get(link).status_code == 404
    assert clinic_a.client_as("clinic_admin").get(link).status_code == 403
    with time_machine.travel(datetime.now(tz=UTC) + timedelta(seconds=conf.export_link_ttl_seconds() + 5)):
        assert officer.get(link).status_code == 410
    assert officer.get(reverse("audit:download", kwargs={"token": "made-up"})).status_code == 404


@pytest.mark.parametrize("role", [r.value for r in Role if r != Role.COMPLIANCE_OFFICER])
def test_only_compliance_officers_may_export_or_download(clinic_a, role):
    export = _build(clinic_a)
    client = clinic_a.client_as(role)
    assert (
        client.post(reverse("audit:exports"), {"date_from": "2026-01-01", "date_to": "2026-01-02"}).status_code == 403
    )
    assert (
        client.post(
            reverse("audit:export-download", kwargs={"export_id": export.public_id}), {"file": "csv"}
        ).status_code
        == 403
    )
    assert client.get(reverse("audit:export", kwargs={"export_id": export.public_id})).status_code == 403


def test_another_clinics_export_is_404(clinic_a, clinic_b):
    theirs = _build(clinic_b)
    officer = clinic_a.client_as(OFFICER)
    assert officer.get(reverse("audit:export", kwargs={"export_id": theirs.public_id})).status_code == 404
    assert (
        officer.post(
            reverse("audit:export-download", kwargs={"export_id": theirs.public_id}), {"file": "csv"}
        ).status_code
        == 404
    )


@pytest.mark.parametrize(
    "data",
    [
        {"date_from": "2026-05-01", "date_to": "2026-04-01"},
        {"date_from": "2000-01-01", "date_to": "2099-12-31"},
        {"date_from": "2026-01-01", "date_to": "2026-01-02", "outcome": "maybe"},
        {},
    ],
)
def test_bad_export_requests_get_clear_errors(clinic_a, data):
    response = clinic_a.client_as(OFFICER).post(reverse("audit:exports"), data)
    assert response.status_code == 400
    assert 'class="field-error"' in response.content.decode()
    with tenant_scope(clinic_a.tenant):
        assert not AuditExport.objects.exists()


def test_filtered_exports_keep_the_chain_verifiable(clinic_a, tmp_path, key_file):
    fill(clinic_a.tenant, 10, action="receipt.viewed")
    fill(clinic_a.tenant, 4, action="statement.lookup")
    fill(clinic_a.tenant, 3, action="receipt.viewed")
    export = _build(clinic_a, Filters(action="statement.lookup"))
    assert export.matched_events == 4
    data = _jsonl(clinic_a, export)
    kinds = [json.loads(line)["type"] for line in data.splitlines()]
    assert kinds.count("event") == 4 and kinds.count("link") == 13
    assert run_verifier(tmp_path, data, "--public-key", key_file)[0] == 0
    with tenant_scope(clinic_a.tenant):
        csv_text = export_read_all(export=export, kind="csv").decode()
        pdf = export_read_all(export=export, kind="pdf")
    assert csv_text.count("statement.lookup") == 4 and "receipt.viewed" not in csv_text
    assert pdf.startswith(b"%PDF")


def test_files_are_encrypted_at_rest(clinic_a):
    events = fill(clinic_a.tenant, 5)
    export = _build(clinic_a)
    for kind in ("jsonl", "csv"):
        raw = _file_path(export, kind).read_bytes()
        assert events[0].hash.encode() not in raw and b"receipt.viewed" not in raw


@pytest.fixture
def export_bytes(clinic_a) -> bytes:
    fill(clinic_a.tenant, 12)
    checkpoint_sign(chain=AuditChain.objects.get(tenant=clinic_a.tenant))
    fill(clinic_a.tenant, 3)
    return _jsonl(clinic_a, _build(clinic_a))


@hsettings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.floats(min_value=0, max_value=1, exclude_max=True), delta=st.integers(min_value=1, max_value=255))
def test_changing_any_one_byte_fails_verification(export_bytes, tmp_path, key_file, position, delta):
    data = bytearray(export_bytes)
    index = int(position * len(data))
    data[index] = (data[index] + delta) % 256
    code, output = run_verifier(tmp_path, bytes(data), "--public-key", key_file)
    assert code == 1, (index, output)
    assert "TAMPERED" in output
    # Without the key, only the seal's own signature bytes go unchecked
    # (and the verifier says so); every other byte still fails.
    footer_start = export_bytes.rstrip(b"\n").rfind(b"\n") + 1
    if index < footer_start:
        assert run_verifier(tmp_path, bytes(data))[0] == 1, index


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.99])
def test_a_truncated_export_fails_with_a_clear_message(export_bytes, tmp_path, keep):
    code, output = run_verifier(tmp_path, export_bytes[: int(len(export_bytes) * keep)])
    assert code == 1
    assert "truncated" in output or "empty" in output or "footer" in output


def test_a_rewritten_export_fails_only_the_signature_check(export_bytes, tmp_path, key_file):
    """Someone who re-hashes the whole file still cannot forge the seal."""
    import hashlib

    lines = export_bytes.splitlines(keepends=True)
    footer = json.loads(lines[-1])
    body = b"".join(lines[:-1])
    header = json.loads(lines[0])
    header["tenant"] = "someone-else"
    body = json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\n" + b"".join(lines[1:-1])
    footer["sha256"] = digest_text(hashlib.sha256(body).digest())
    forged = body + json.dumps(footer, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    assert run_verifier(tmp_path, forged)[0] == 0  # without the key only the digest is checked...
    code, output = run_verifier(tmp_path, forged, "--public-key", key_file)
    assert code == 1 and "seal" in output


def test_the_verifier_command_line(export_bytes, tmp_path, key_file):
    good = tmp_path / "good.jsonl"
    good.write_bytes(export_bytes)

    def run(*a: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "audit.verify", *a], cwd=ROOT, capture_output=True, text=True, timeout=60
        )

    ok = run(str(good), "--public-key", key_file)
    assert ok.returncode == 0, ok.stderr
    assert "intact" in ok.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(export_bytes.replace(b'"R-3"', b'"R-8"', 1))
    broken = run(str(bad))
    assert broken.returncode == 1 and "TAMPERED" in broken.stderr
    missing = run(str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    assert run(str(good), "--require-signatures").returncode == 2


def test_export_audit_command_writes_verifiable_files(clinic_a, tmp_path, key_file, capsys):
    fill(clinic_a.tenant, 8)
    today = datetime.now(tz=UTC).date()
    out = tmp_path / "out"
    call_command(
        "export_audit",
        "--tenant",
        "alpha",
        "--from",
        today.isoformat(),
        "--to",
        today.isoformat(),  # the last day, included: the whole of today
        "--out",
        str(out),
    )
    captured = capsys.readouterr()
    assert "9/9 events" in captured.err and "100.0%" in captured.err  # 8 + the export request itself
    assert {p.name for p in out.iterdir()} == {"events.jsonl", "events.csv", "summary.pdf"}
    assert run_verifier(tmp_path, (out / "events.jsonl").read_bytes(), "--public-key", key_file)[0] == 0
    assert AuditEvent.objects.filter(action="audit.export_requested", details__via="cli").count() == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tenant", "nope", "--from", "2026-01-01", "--to", "2026-01-02"], "no clinic"),
        (["--tenant", "alpha", "--from", "01/01/2026", "--to", "2026-01-02"], "must be a date"),
        (["--tenant", "alpha", "--from", "2026-02-01", "--to", "2026-01-02"], "must not be before --from"),
        (["--tenant", "alpha", "--from", "2000-01-01", "--to", "2090-01-02"], "at most"),
    ],
)
def test_export_audit_command_rejects_bad_input(clinic_a, tmp_path, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("export_audit", *args, "--out", str(tmp_path))


def test_verify_audit_command(clinic_a, tamper, capsys):
    fill(clinic_a.tenant, 6)
    call_command("verify_audit", "--tenant", "alpha")
    assert "intact" in capsys.readouterr().out
    with tamper() as sql:
        sql(
            "UPDATE audit_auditevent SET action = 'auth.login' WHERE tenant_id = %s AND sequence = 2",
            [clinic_a.tenant.pk],
        )
    with pytest.raises(CommandError) as caught:
        call_command("verify_audit", "--tenant", "alpha")
    assert caught.value.returncode == 1
    assert "BROKEN at sequence 2" in capsys.readouterr().err
    with pytest.raises(CommandError, match="no clinic") as unknown:
        call_command("verify_audit", "--tenant", "nope")
    assert unknown.value.returncode == 2


def test_export_request_service_queues_the_build(clinic_a, django_capture_on_commit_callbacks):
    start, end = _range()
    with django_capture_on_commit_callbacks(execute=True), tenant_scope(clinic_a.tenant):
        export = export_request(
            tenant=clinic_a.tenant,
            actor=clinic_a.user(OFFICER),
            actor_role=OFFICER,
            date_from=start,
            date_to=end,
            filters=Filters(),
        )
    with tenant_scope(clinic_a.tenant):
        export.refresh_from_db()
    assert export.status == ExportStatus.READY


@pytest.mark.postgres
@pytest.mark.parametrize("rechain", [True, False], ids=["rewritten-valid-chain", "tampered-chain"])
def test_the_postgresql_fast_path_writes_exactly_what_the_record_path_writes(clinic_a, tamper, rechain, monkeypatch):
    """Values PostgreSQL renders differently (multi-key details, non-ASCII, quotes, IPv6) and tampering."""
    from audit.chain import GENESIS, event_hash
    from audit.services import segments
    from audit.services.integrity import chain_events

    read_through_orm: list[int] = []
    record_at = segments._record_at

    def counting_record_at(chain, sequence):
        read_through_orm.append(sequence)
        return record_at(chain, sequence)

    monkeypatch.setattr(segments, "_record_at", counting_record_at)

    tenant = clinic_a.tenant
    with tenant_scope(tenant):
        fill(tenant, 8)
        chain = AuditChain.objects.get(tenant=tenant)
        checkpoint_sign(chain=chain)
        fill(tenant, 6, action="statement.lookup")
        tricky: dict[int, dict[str, str]] = {
            3: {"details": json.dumps({"zeta": "a", "to": "b", "action": ["x", "y"], "n": 10**15})},
            5: {"target_id": 'a "quote" and a \\ backslash', "details": json.dumps({"n": "\u00e9t\u00e9 \u2603"})},
            7: {"source_ip": "2001:db8::1", "actor_role": ""},
            11: {"details": json.dumps({"k": "a, b: c", "list": []})},
        }
        with tamper() as run:
            for sequence, changes in tricky.items():
                for column, value in changes.items():
                    run(
                        f'UPDATE audit_auditevent SET "{column}" = %s WHERE chain_id = %s AND sequence = %s',  # noqa: S608
                        [value, chain.pk, sequence],
                    )
            if rechain:  # every hash recomputed: a valid chain (only the signed checkpoint disagrees)
                prev = GENESIS
                for record in list(chain_events(chain)):
                    record["prev_hash"] = prev
                    prev = event_hash(record)
                    run(
                        "UPDATE audit_auditevent SET prev_hash = %s, hash = %s WHERE chain_id = %s AND sequence = %s",
                        [record["prev_hash"], prev, chain.pk, record["sequence"]],
                    )
        last = AuditChain.objects.get(pk=chain.pk).last_sequence
        for first, filters, with_csv in [
            (1, Filters(), False),
            (1, Filters(), True),
            (2, Filters(action="statement.lookup"), True),
            (4, Filters(target_type="receipt"), False),
        ]:
            (fast_jsonl, fast_csv, fast), (slow_jsonl, slow_csv, slow) = segment_both_ways(
                chain, first=first, last=last, filters=filters, with_csv=with_csv
            )
            assert fast_jsonl == slow_jsonl
            assert fast_csv == slow_csv
            assert (fast.events, fast.links, fast.sha256) == (slow.events, slow.links, slow.sha256)
            assert (fast.by_action, fast.by_outcome, fast.by_role) == (slow.by_action, slow.by_outcome, slow.by_role)
            assert (fast.first_sequence, fast.last_sequence, fast.last_hash) == (
                slow.first_sequence,
                slow.last_sequence,
                slow.last_hash,
            )
            assert fast.verification is not None and slow.verification is not None
            assert fast.verification.problems == slow.verification.problems
            assert fast.verification.summary() == slow.verification.summary()
            assert fast.verification.ok is False  # the checkpoint, or the tampering, is caught either way
        if rechain:
            # Only the row with a backslash (escaped in COPY's text format) left the fast path.
            assert sorted(set(read_through_orm)) == [5]
