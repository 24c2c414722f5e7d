"""Offline verification as an auditor meets it: the key from the console, the files as downloaded,
and a machine that may not have the `cryptography` package."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from django.urls import reverse

from audit.models import AuditExport
from audit.services.exports import export_read_all
from audit.services.integrity import chain_for, checkpoint_sign
from audit.signing import ProviderSigner
from portal.tenancy.context import tenant_scope
from security.crypto.providers import get_signing_provider
from security.models import Role
from tests.audit.conftest import export_now, fill

pytestmark = pytest.mark.django_db
OFFICER = Role.COMPLIANCE_OFFICER.value
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _export_dir(settings, tmp_path):
    settings.SETTLE_AUDIT_EXPORT_DIR = str(tmp_path / "exports")


def _verify(*args: str, pythonpath: str = str(ROOT)) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    env.pop("SETTLE_AUDIT_SIGNING_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "audit.verify", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_the_verify_page_publishes_the_public_key_that_the_verifier_takes(clinic_a, tmp_path):
    fill(clinic_a.tenant, 5)
    checkpoint_sign(chain=chain_for(clinic_a.tenant))
    officer = clinic_a.client_as(OFFICER)
    key = ProviderSigner(get_signing_provider()).public_key
    page = officer.get(reverse("audit:verify"))
    assert page.status_code == 200
    html = page.content.decode()
    assert key.fingerprint in html
    assert reverse("audit:signing-key") in html
    assert "audit-&lt;export id&gt;-events.jsonl" in html

    download = officer.get(reverse("audit:signing-key"))
    assert download.status_code == 200
    assert download["Content-Type"] == "application/x-pem-file"
    assert download["Content-Disposition"] == 'attachment; filename="audit-signing.pem"'
    pem = tmp_path / "audit-signing.pem"
    pem.write_bytes(download.content)
    export = tmp_path / "export.jsonl"
    export.write_bytes(export_now(clinic_a.tenant))
    checked = _verify(str(export), "--public-key", str(pem))
    assert checked.returncode == 0, checked.stderr
    assert f"Signatures verified with pinned key(s) {key.fingerprint}." in checked.stdout


def test_with_hmac_signing_there_is_no_public_key_to_publish(clinic_a, settings):
    settings.SETTLE_AUDIT_SIGNER = "hmac"
    officer = clinic_a.client_as(OFFICER)
    assert "no public half" in officer.get(reverse("audit:verify")).content.decode()
    assert officer.get(reverse("audit:signing-key")).status_code == 404


def test_the_summary_pdf_names_the_jsonl_file_as_it_is_downloaded(clinic_a):
    fill(clinic_a.tenant, 3)
    export_now(clinic_a.tenant)
    with tenant_scope(clinic_a.tenant):
        export = AuditExport.objects.get(tenant=clinic_a.tenant)
        pdf = export_read_all(export=export, kind="pdf")
    text = b"".join(
        zlib.decompress(stream) for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.DOTALL)
    )
    assert f"audit-{export.public_id}-events.jsonl".encode() in text
    assert b"verify events.jsonl" not in text


def test_without_cryptography_the_verifier_checks_the_chain_and_asks_for_it_only_for_signatures(clinic_a, tmp_path):
    fill(clinic_a.tenant, 6)
    checkpoint_sign(chain=chain_for(clinic_a.tenant))
    export = tmp_path / "audit-export-events.jsonl"
    export.write_bytes(export_now(clinic_a.tenant))
    pem = tmp_path / "audit-signing.pem"
    pem.write_text(ProviderSigner(get_signing_provider()).public_key.pem())
    # A folder that shadows the package: `import cryptography` fails as on a machine without it.
    blocker = tmp_path / "no-cryptography" / "cryptography"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("No module named cryptography (blocked by the test)")\n')
    without = f"{blocker.parent}{os.pathsep}{ROOT}"

    chain_only = _verify(str(export), pythonpath=without)
    assert chain_only.returncode == 0, chain_only.stderr
    assert "intact" in chain_only.stdout
    assert "signatures were NOT checked" in chain_only.stdout
    assert "install 'cryptography'" in chain_only.stdout
    assert "Traceback" not in chain_only.stderr

    tampered = tmp_path / "tampered.jsonl"
    tampered.write_bytes(export.read_bytes().replace(b'"R-2"', b'"R-9"', 1))
    broken = _verify(str(tampered), pythonpath=without)
    assert broken.returncode == 1 and "TAMPERED" in broken.stderr and "Traceback" not in broken.stderr

    signatures = _verify(str(export), "--public-key", str(pem), pythonpath=without)
    assert signatures.returncode == 2
    assert "needs the 'cryptography' package" in signatures.stderr
    assert "Traceback" not in signatures.stderr
