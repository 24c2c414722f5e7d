"""Every registered action is emitted, exactly once, by the act it names.

Parametrised over the whole registry (audit.actions.ACTIONS). Each action
needs a scenario here that performs the act through the application; an
action without one is listed in NO_SCENARIO_YET with its owner, and is an
expected failure until its scenario is written. A new action that is in
neither list fails test_every_action_is_accounted_for.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import override_settings
from django.urls import reverse

from audit.actions import ACTIONS
from audit.exportformat import Filters
from audit.models import AuditChain, AuditEvent, AuditExport
from audit.services.archive import archive_month
from audit.services.exports import export_build
from audit.services.integrity import checkpoint_sign
from billing.demo import DEMO_CLINICS, demo_seed
from billing.models import CardCheckPolicy
from billing.processor import set_processor_factory
from billing.services.processor_accounts import processor_account_set
from portal.tenancy.context import tenant_scope
from security.crypto.providers import LocalKeyProvider, get_provider, reset_providers, set_provider
from security.crypto.rotation import data_key_rotate, data_key_rotation_start, data_keys_rewrap
from security.models import Role, UserSession
from security.permissions import ROLE_PERMISSIONS
from tests.audit.conftest import fill
from tests.billing.fakes import FakeProcessor
from tests.billing.webhook_events import intent_object, signed_event
from tests.conftest import platform_client, sign_in
from tests.factories import PERSONA_PASSWORD
from tests.security.crypto_support import new_master_key

pytestmark = pytest.mark.django_db

OFFICER = Role.COMPLIANCE_OFFICER.value

# Scenarios of other areas register themselves when imported.
import tests.audit.scenarios_breakglass  # noqa: E402, F401
import tests.audit.scenarios_identity  # noqa: E402, F401
import tests.audit.scenarios_imports  # noqa: E402, F401
import tests.audit.scenarios_money  # noqa: E402, F401
import tests.audit.scenarios_payments  # noqa: E402, F401
import tests.audit.scenarios_platform  # noqa: E402, F401
import tests.audit.scenarios_settings  # noqa: E402, F401
import tests.audit.scenarios_team  # noqa: E402, F401
from tests.audit.scenarios import NO_SCENARIO_YET, SCENARIOS, scenario  # noqa: E402


def _today() -> str:
    return datetime.now(tz=UTC).date().isoformat()


@scenario("auth.login")
def _login(clinic) -> None:
    response = clinic.client().post(
        reverse("staff:login"), {"username": clinic.user("front_desk").email, "password": PERSONA_PASSWORD}
    )
    assert response.status_code == 302


@scenario("auth.login_failed")
def _login_failed(clinic) -> None:
    clinic.client().post(
        reverse("staff:login"), {"username": clinic.user("front_desk").email, "password": "wrong-password-123"}
    )


@scenario("auth.logout")
def _logout(clinic) -> None:
    clinic.client_as("front_desk").post(reverse("staff:logout"))


def _signed_in(clinic):
    client = clinic.client()
    sign_in(client, clinic.user("front_desk"))
    return client


@scenario("auth.session_ended")
def _session_ended(clinic) -> None:
    client, other = _signed_in(clinic), _signed_in(clinic)
    other_id = UserSession.objects.get(session_key=other.session.session_key).public_id
    assert client.post(reverse("sessions:end", kwargs={"session_id": other_id})).status_code == 302


@scenario("auth.sessions_ended_others")
def _sessions_ended_others(clinic) -> None:
    client = _signed_in(clinic)
    _signed_in(clinic)
    assert client.post(reverse("sessions:end-others")).status_code == 302


@scenario("ledger.viewed")
def _ledger(clinic) -> None:
    assert clinic.client_as("front_desk").get(reverse("staff:payments")).status_code == 200


@scenario("patient.list_viewed")
def _patient_list(clinic) -> None:
    assert clinic.client_as("front_desk").get(reverse("staff:patients")).status_code == 200


@scenario("patient.searched")
def _patient_search(clinic) -> None:
    response = clinic.client_as("front_desk").post(reverse("staff:patients"), {"q": clinic.patient.last_name})
    assert response.status_code == 200


@scenario("statement.lookup")
def _lookup(clinic) -> None:
    clinic.client().post(
        "/", {"statement_number": clinic.statement.number, "date_of_birth": clinic.patient.date_of_birth.isoformat()}
    )


@scenario("checkout.opened")
def _checkout(clinic) -> None:
    client = clinic.client()
    response = client.post(
        "/", {"statement_number": clinic.statement.number, "date_of_birth": clinic.patient.date_of_birth.isoformat()}
    )
    client.get(response["Location"])


@scenario("audit.searched")
def _searched(clinic) -> None:
    clinic.client_as(OFFICER).get(reverse("audit:search"))


@scenario("audit.event_viewed")
def _event_viewed(clinic) -> None:
    event = AuditEvent.objects.filter(tenant=clinic.tenant).earliest("sequence")
    clinic.client_as(OFFICER).get(reverse("audit:event", kwargs={"event_id": event.public_id}))


@scenario("audit.patient_report")
def _patient_report(clinic) -> None:
    clinic.client_as(OFFICER).get(reverse("audit:patient-report", kwargs={"patient_id": clinic.patient.public_id}))


@scenario("patient.name_viewed")
def _patient_name_viewed(clinic, monkeypatch) -> None:
    # No clinic role holds both audit.view and patients.view today (emergency access does):
    # grant the officer patients.view, as a clinic that wants officers to see names would.
    monkeypatch.setitem(ROLE_PERMISSIONS, Role.COMPLIANCE_OFFICER, ROLE_PERMISSIONS[OFFICER] | {"patients.view"})
    response = clinic.client_as(OFFICER).get(
        reverse("audit:patient-report", kwargs={"patient_id": clinic.patient.public_id})
    )
    assert response.status_code == 200


@scenario("audit.user_report")
def _user_report(clinic) -> None:
    clinic.client_as(OFFICER).get(reverse("audit:user-report", kwargs={"user_id": clinic.user("front_desk").public_id}))


@scenario("audit.verify_requested")
def _verify_requested(clinic) -> None:
    clinic.client_as(OFFICER).post(reverse("audit:verify"))


@scenario("audit.verified")
def _verified(clinic, capture) -> None:
    with capture(execute=True):
        clinic.client_as(OFFICER).post(reverse("audit:verify"))


@scenario("audit.export_requested")
def _export_requested(clinic) -> None:
    clinic.client_as(OFFICER).post(reverse("audit:exports"), {"date_from": _today(), "date_to": _today()})


def _ready_export(clinic) -> AuditExport:
    now = datetime.now(tz=UTC)
    with tenant_scope(clinic.tenant):
        export = AuditExport.objects.create(
            tenant=clinic.tenant,
            date_from=now - timedelta(days=1),
            date_to=now + timedelta(days=1),
            filters=Filters().as_dict(),
        )
        return export_build(export=export)


@scenario("audit.export_built")
def _export_built(clinic) -> None:
    _ready_export(clinic)


@scenario("audit.export_link_created")
def _link_created(clinic, export) -> None:
    clinic.client_as(OFFICER).post(
        reverse("audit:export-download", kwargs={"export_id": export.public_id}), {"file": "pdf"}
    )


@scenario("audit.export_downloaded")
def _downloaded(clinic, export) -> None:
    client = clinic.client_as(OFFICER)
    link = client.post(reverse("audit:export-download", kwargs={"export_id": export.public_id}), {"file": "pdf"})
    b"".join(client.get(link["Location"]).streaming_content)


@scenario("audit.checkpoint_signed")
def _checkpoint(clinic) -> None:
    checkpoint_sign(chain=AuditChain.objects.get(tenant=clinic.tenant))


@scenario("audit.archived")
def _archived(clinic, archive) -> None:
    with time_machine.travel(datetime(2025, 1, 10, tzinfo=UTC)):
        fill(clinic.tenant, 2, target_type="old")
    archive_month(chain=AuditChain.objects.get(tenant=clinic.tenant), period="2025-01", client=archive)


# --- Billing: guests paying, the processor telling us -------------------------------


@contextmanager
def _processor(**behaviour):
    fake = FakeProcessor(**behaviour)
    set_processor_factory(lambda tenant, account: fake)
    try:
        yield fake
    finally:
        set_processor_factory(None)


def _look_up(clinic, client=None, **extra):
    client = client or clinic.client()
    dob = clinic.patient.date_of_birth.isoformat()
    return client, client.post("/", {"statement_number": clinic.statement.number, "date_of_birth": dob}, **extra)


def _pay(clinic, fake, amount="125.00"):
    """Look up, load the card form, tokenize (as Stripe.js would) and submit."""
    client, response = _look_up(clinic)
    page = client.get(response["Location"]).content.decode()
    config = json.loads(page.split('id="checkout-config" type="application/json">', 1)[1].split("</script>", 1)[0])
    fake.complete_setup(config["setupIntentId"])
    body = client.post(config["submitUrl"], {"amount": amount, "setup_intent_id": config["setupIntentId"]}).json()
    return client, body


def _set_policy(clinic, policy):
    account = clinic.processor_account
    with tenant_scope(clinic.tenant):
        processor_account_set(
            tenant=clinic.tenant,
            publishable_key=account.publishable_key,
            secret_key=account.secret_key,
            webhook_secret=account.webhook_secret,
            card_check_policy=policy,
        )


@scenario("statement.lookup_locked")
def _lookup_locked(clinic) -> None:
    client = clinic.client()
    for _ in range(10):
        client.post("/", {"statement_number": clinic.statement.number, "date_of_birth": "1900-01-01"})
    _, response = _look_up(clinic, client)
    assert response.status_code == 429


@scenario("payment.attempted")
def _attempted(clinic) -> None:
    with _processor() as fake:
        _pay(clinic, fake)


@scenario("payment.succeeded")
def _succeeded(clinic) -> None:
    with _processor() as fake:
        assert _pay(clinic, fake)[1]["state"] == "succeeded"


@scenario("payment.failed")
def _failed(clinic) -> None:
    with _processor(create_outcome="decline") as fake:
        assert _pay(clinic, fake)[1]["state"] == "failed"


@scenario("payment.canceled")
def _canceled(clinic) -> None:
    _set_policy(clinic, CardCheckPolicy.REFUSE)
    with _processor(cvc_check="fail") as fake:
        assert _pay(clinic, fake)[1]["state"] == "failed"


@scenario("payment.flagged")
def _flagged(clinic) -> None:
    _set_policy(clinic, CardCheckPolicy.FLAG)
    with _processor(postal_check="fail") as fake:
        assert _pay(clinic, fake)[1]["state"] == "succeeded"


@scenario("payment.processor_unavailable")
def _unavailable(clinic) -> None:
    with _processor(create_outcome="unavailable") as fake:
        assert _pay(clinic, fake)[1]["state"] == "unavailable"


@scenario("receipt.viewed")
def _receipt(clinic) -> None:
    with _processor() as fake:
        client, body = _pay(clinic, fake)
    assert client.get(body["resultUrl"]).status_code == 200


@scenario("webhook.processed")
def _webhook(clinic) -> None:
    payload, signature = signed_event(
        secret=clinic.webhook_secret,
        event_id="evt_coverage",
        event_type="payment_intent.succeeded",
        obj=intent_object("pi_elsewhere", status="succeeded", amount=100, metadata={}),
    )
    with _processor():
        response = platform_client().post(
            f"/webhooks/stripe/{clinic.tenant.public_id}/",
            data=payload,
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=signature,
        )
    assert response.json() == {"outcome": "ignored"}


@scenario("demo.seeded")
def _seeded(clinic) -> None:
    demo_seed(clinics=DEMO_CLINICS[:1])


# --- Keys ------------------------------------------------------------------------------


@scenario("key.rotation_started")
def _rotation_started(clinic) -> None:
    with override_settings(SETTLE_ACTIVE_KEY_CACHE_SECONDS=0):
        data_key_rotation_start(tenant=clinic.tenant, purpose="phi")


@scenario("key.rotation_completed")
def _rotation_completed(clinic) -> None:
    with override_settings(SETTLE_ACTIVE_KEY_CACHE_SECONDS=0):
        data_key_rotate(tenant=clinic.tenant, purpose="phi")


@scenario("key.rewrapped")
def _rewrapped(clinic) -> None:
    old = get_provider("local")
    assert isinstance(old, LocalKeyProvider)
    set_provider("local", LocalKeyProvider(master_keys=[new_master_key(), *old.master_keys]))
    try:
        data_keys_rewrap(tenant=clinic.tenant)
    finally:
        reset_providers()


def test_every_action_is_accounted_for():
    unaccounted = set(ACTIONS) - set(SCENARIOS) - set(NO_SCENARIO_YET)
    assert not unaccounted, f"actions without a coverage scenario: {sorted(unaccounted)}"
    assert not set(NO_SCENARIO_YET) - set(ACTIONS), "NO_SCENARIO_YET lists actions that no longer exist"


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_each_action_is_emitted_once_by_its_act(
    action, clinic_a, settings, tmp_path, django_capture_on_commit_callbacks, request
):
    if action not in SCENARIOS:
        pytest.xfail(f"no coverage scenario yet; owner: {NO_SCENARIO_YET.get(action, 'unknown')}")
    settings.SETTLE_AUDIT_EXPORT_DIR = str(tmp_path)
    func = SCENARIOS[action]
    kwargs = {}
    names = func.__code__.co_varnames[: func.__code__.co_argcount]
    if "export" in names:
        kwargs["export"] = _ready_export(clinic_a)
    if "archive" not in names:
        fill(clinic_a.tenant, 2)  # something to search, view and export
    if "archive" in names:
        kwargs["archive"] = request.getfixturevalue("archive_settings")
    if "capture" in names:
        kwargs["capture"] = django_capture_on_commit_callbacks
    if "monkeypatch" in names:
        kwargs["monkeypatch"] = request.getfixturevalue("monkeypatch")
    before = AuditEvent.objects.filter(action=action).count()
    func(clinic_a, **kwargs)
    assert AuditEvent.objects.filter(action=action).count() - before == 1


# --- Refunds (billing.services.refunds) ---------------------------------------------------------------


def _paid_payment(clinic):
    from tests.billing.test_refunds import paid

    return paid(clinic)


def _refund_scripted():
    fake = FakeProcessor()
    set_processor_factory(lambda tenant, account: fake)
    return fake


@scenario("payment.viewed")
def _payment_viewed(clinic) -> None:
    payment = _paid_payment(clinic)
    client = clinic.client_as("front_desk")
    assert client.get(reverse("staff:payment", kwargs={"payment_id": payment.public_id})).status_code == 200


@scenario("refund.requested")
def _refund_requested(clinic) -> None:
    payment = _paid_payment(clinic)
    url = reverse("staff:payment-refund", kwargs={"payment_id": payment.public_id})
    assert clinic.client_as("front_desk").post(url, {"amount": "5.00", "reason": "overpayment"}).status_code == 302


def _pending_refund(clinic):
    from billing.refund_models import Refund

    _refund_requested(clinic)
    with tenant_scope(clinic.tenant):
        return Refund.objects.get()


@scenario("refund.approved")
def _refund_approved(clinic, capture) -> None:
    _refund_scripted()
    try:
        refund = _pending_refund(clinic)
        with capture(execute=True):
            url = reverse("staff:refund-approve", kwargs={"refund_id": refund.public_id})
            assert clinic.client_as("billing_manager").post(url).status_code == 302
    finally:
        set_processor_factory(None)


@scenario("refund.succeeded")
def _refund_succeeded(clinic, capture) -> None:
    _refund_approved(clinic, capture)


@scenario("refund.failed")
def _refund_failed(clinic, capture) -> None:
    fake = _refund_scripted()
    fake.refund_outcome = "fail"
    try:
        refund = _pending_refund(clinic)
        with capture(execute=True):
            url = reverse("staff:refund-approve", kwargs={"refund_id": refund.public_id})
            assert clinic.client_as("billing_manager").post(url).status_code == 302
    finally:
        set_processor_factory(None)


@scenario("refund.rejected")
def _refund_rejected(clinic) -> None:
    refund = _pending_refund(clinic)
    url = reverse("staff:refund-reject", kwargs={"refund_id": refund.public_id})
    assert clinic.client_as("billing_manager").post(url, {"reason": "Not a duplicate"}).status_code == 302


@scenario("refund.queue_viewed")
def _refund_queue_viewed(clinic) -> None:
    assert clinic.client_as("billing_manager").get(reverse("staff:refunds")).status_code == 200


# --- Disputes (billing.services.disputes) --------------------------------------------------------------


def _dispute_delivered(clinic, fake, dispute_id, event_id, event_type):
    from tests.billing.test_disputes import deliver

    assert deliver(clinic, dispute_id, event_id, event_type).status_code == 200


def _disputed_payment(clinic):
    fake = _refund_scripted()
    payment = _paid_payment(clinic)
    snapshot = fake.open_dispute(payment.processor_payment_intent_id, payment.amount_minor)
    _dispute_delivered(clinic, fake, snapshot.id, "evt_cov_open", "charge.dispute.created")
    return fake, snapshot


@scenario("dispute.opened")
def _dispute_opened(clinic) -> None:
    try:
        _disputed_payment(clinic)
    finally:
        set_processor_factory(None)


@scenario("dispute.updated")
def _dispute_updated(clinic) -> None:
    try:
        fake, snapshot = _disputed_payment(clinic)
        fake.set_dispute(snapshot.id, status="under_review")
        _dispute_delivered(clinic, fake, snapshot.id, "evt_cov_update", "charge.dispute.updated")
    finally:
        set_processor_factory(None)


@scenario("dispute.closed")
def _dispute_closed(clinic) -> None:
    try:
        fake, snapshot = _disputed_payment(clinic)
        fake.set_dispute(snapshot.id, status="lost")
        _dispute_delivered(clinic, fake, snapshot.id, "evt_cov_close", "charge.dispute.closed")
    finally:
        set_processor_factory(None)


@scenario("dispute.funds_withdrawn")
def _dispute_funds_withdrawn(clinic) -> None:
    try:
        fake, snapshot = _disputed_payment(clinic)
        fake.set_dispute(snapshot.id, balance_movements=(-snapshot.amount,))
        _dispute_delivered(clinic, fake, snapshot.id, "evt_cov_withdrawn", "charge.dispute.funds_withdrawn")
    finally:
        set_processor_factory(None)


@scenario("dispute.funds_reinstated")
def _dispute_funds_reinstated(clinic) -> None:
    try:
        fake, snapshot = _disputed_payment(clinic)
        fake.set_dispute(snapshot.id, status="won", balance_movements=(-snapshot.amount, snapshot.amount))
        _dispute_delivered(clinic, fake, snapshot.id, "evt_cov_reinstated", "charge.dispute.funds_reinstated")
    finally:
        set_processor_factory(None)


@scenario("dispute.list_viewed")
def _dispute_list_viewed(clinic) -> None:
    assert clinic.client_as("billing_manager").get(reverse("staff:disputes")).status_code == 200
