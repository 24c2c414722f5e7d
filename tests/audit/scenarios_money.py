"""Audit coverage scenarios: adjustments, their reason list and the payment CSV (see tests/audit/scenarios.py).

Each performs the act through the staff pages of the alpha clinic.
"""

from __future__ import annotations

from django.urls import reverse

from billing.adjustment_models import Adjustment, AdjustmentReason
from billing.services.adjustments import adjustment_reasons_for
from portal.tenancy.context import tenant_scope
from security.models import Role
from tests.audit.scenarios import scenario
from tests.conftest import Clinic

BILLING = Role.BILLING_MANAGER.value
ADMIN = Role.CLINIC_ADMIN.value


def _reason(clinic: Clinic) -> AdjustmentReason:
    with tenant_scope(clinic.tenant):
        return adjustment_reasons_for(tenant=clinic.tenant, active_only=True)[0]


def _adjust(clinic: Clinic, amount: str, direction: str = "increase") -> None:
    url = reverse("staff:statement-adjust", kwargs={"statement_id": clinic.statement.public_id})
    data = {"direction": direction, "amount": amount, "reason": str(_reason(clinic).public_id), "note": ""}
    assert clinic.client_as(BILLING).post(url, data).status_code == 302


def _pending(clinic: Clinic) -> Adjustment:
    _adjust(clinic, "900.00")  # above the billing manager's $50.00 limit
    with tenant_scope(clinic.tenant):
        return Adjustment.objects.get()


@scenario("adjustment.requested")
def _adjustment_requested(clinic: Clinic) -> None:
    _pending(clinic)


@scenario("adjustment.applied")
def _adjustment_applied(clinic: Clinic) -> None:
    _adjust(clinic, "1.00")  # within the limit: applied at once


@scenario("adjustment.approved")
def _adjustment_approved(clinic: Clinic) -> None:
    adjustment = _pending(clinic)
    url = reverse("staff:adjustment-approve", kwargs={"adjustment_id": adjustment.public_id})
    assert clinic.client_as(ADMIN).post(url).status_code == 302


@scenario("adjustment.rejected")
def _adjustment_rejected(clinic: Clinic) -> None:
    adjustment = _pending(clinic)
    url = reverse("staff:adjustment-reject", kwargs={"adjustment_id": adjustment.public_id})
    assert clinic.client_as(ADMIN).post(url, {"reason": "Charity care form missing"}).status_code == 302


@scenario("adjustment.queue_viewed")
def _adjustment_queue_viewed(clinic: Clinic) -> None:
    assert clinic.client_as(BILLING).get(reverse("staff:refunds")).status_code == 200


@scenario("adjustment_reason.added")
def _adjustment_reason_added(clinic: Clinic) -> None:
    response = clinic.client_as(ADMIN).post(reverse("staff:adjustment-reasons"), {"label": "Hardship plan"})
    assert response.status_code == 302


def _toggle(clinic: Clinic, reason: AdjustmentReason, active: str) -> None:
    url = reverse("staff:adjustment-reason-active", kwargs={"reason_id": reason.public_id})
    assert clinic.client_as(ADMIN).post(url, {"active": active}).status_code == 302


@scenario("adjustment_reason.deactivated")
def _adjustment_reason_deactivated(clinic: Clinic) -> None:
    _toggle(clinic, _reason(clinic), "0")


@scenario("adjustment_reason.reactivated")
def _adjustment_reason_reactivated(clinic: Clinic) -> None:
    reason = _reason(clinic)
    _toggle(clinic, reason, "0")
    _toggle(clinic, reason, "1")


@scenario("payment.list_exported")
def _payment_list_exported(clinic: Clinic) -> None:
    response = clinic.client_as(BILLING).get(reverse("staff:payments-export"), {"status": "succeeded"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")


@scenario("phone_payment.opened")
def _phone_payment_opened(clinic: Clinic) -> None:
    url = reverse("staff:phone-payment-open", kwargs={"statement_id": clinic.statement.public_id})
    assert clinic.client_as(Role.FRONT_DESK.value).post(url).status_code == 302
