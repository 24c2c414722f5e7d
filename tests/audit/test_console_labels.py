"""The console speaks people's words: action labels, and why a chain has no checkpoint yet."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.actions import ACTION_LABELS, ACTIONS, action_label
from audit.models import AuditChain
from audit.services.integrity import checkpoint_sign
from security.models import Role
from tests.audit.conftest import fill

pytestmark = pytest.mark.django_db

OFFICER = Role.COMPLIANCE_OFFICER.value


def test_every_registered_action_has_a_label():
    missing = sorted(a for a in ACTIONS if not ACTION_LABELS.get(a, "").strip())
    assert not missing, f"add a label to audit.actions.ACTION_LABELS for: {missing}"
    assert not set(ACTION_LABELS) - set(ACTIONS), "labels for actions that are not registered"
    assert all(label != code for code, label in ACTION_LABELS.items())


def test_an_action_without_a_label_shows_its_code_marked(clinic_a, monkeypatch):
    assert action_label("payment.succeeded") == "Payment succeeded"
    monkeypatch.setitem(ACTIONS, "demo.unlabelled", "An action a newer area registered without a label")
    fill(clinic_a.tenant, 1, action="demo.unlabelled")
    body = clinic_a.client_as(OFFICER).get(reverse("audit:search")).content.decode()
    assert '<span title="demo.unlabelled">demo.unlabelled (no label)</span>' in body
    assert '<option value="demo.unlabelled">demo.unlabelled (no label)</option>' in body


def test_search_table_filter_and_event_page_show_labels(clinic_a):
    event = fill(clinic_a.tenant, 1, action="payment.succeeded")[0]
    officer = clinic_a.client_as(OFFICER)
    search = officer.get(reverse("audit:search")).content.decode()
    assert '<span title="payment.succeeded">Payment succeeded</span>' in search
    assert '<option value="payment.succeeded">Payment succeeded</option>' in search
    assert "<code>payment.succeeded</code>" not in search
    detail = officer.get(reverse("audit:event", kwargs={"event_id": event.public_id})).content.decode()
    assert "Payment succeeded <code>payment.succeeded</code>" in detail


def _verify(clinic, capture) -> tuple[str, str]:
    officer = clinic.client_as(OFFICER)
    with capture(execute=True):
        response = officer.post(reverse("audit:verify"))
    return response["Location"], officer.get(response["Location"]).content.decode()


def test_an_intact_chain_without_checkpoints_says_why_and_how_to_make_one(
    clinic_a, django_capture_on_commit_callbacks, tamper
):
    fill(clinic_a.tenant, 3)
    first, page = _verify(clinic_a, django_capture_on_commit_callbacks)
    assert "Intact" in page
    assert "No signed checkpoint exists for this chain yet" in page and "This is not a failure." in page
    assert "celery -A portal beat" in page and "checkpoint_sign_all()" in page

    checkpoint_sign(chain=AuditChain.objects.get(tenant=clinic_a.tenant))
    _, page = _verify(clinic_a, django_capture_on_commit_callbacks)
    assert "1 signed checkpoints agree" in page
    assert "No signed checkpoint exists" not in page and "checkpoint_sign_all()" not in page
    # The earlier run, seen now: checkpoints exist but were signed after it.
    earlier = clinic_a.client_as(OFFICER).get(first).content.decode()
    assert "signed after it ran. Verify again to check them." in earlier

    with tamper() as sql:
        sql(
            "UPDATE audit_auditevent SET outcome = 'failure' WHERE tenant_id = %s AND sequence = 2",
            [clinic_a.tenant.pk],
        )
    _, page = _verify(clinic_a, django_capture_on_commit_callbacks)
    assert "Broken" in page and "This is not a failure." not in page
