"""Access functions: the only way views fetch billing objects by public id.

Missing, belonging to another tenant, and not yours look the same: 404.
"""

from __future__ import annotations

from uuid import UUID

from django.http import Http404, HttpRequest

from billing.import_models import ImportJob
from billing.models import Checkout, Patient, Payment, PaymentChannel, Statement
from billing.refund_models import Refund
from portal.models import Tenant

SESSION_CHECKOUTS = "settle_checkouts"
MAX_SESSION_CHECKOUTS = 20


def remember_checkout(request: HttpRequest, checkout: Checkout) -> None:
    """Bind a checkout to this browser session (the only one that may use it)."""
    ids = [str(checkout.public_id), *request.session.get(SESSION_CHECKOUTS, [])]
    request.session[SESSION_CHECKOUTS] = ids[:MAX_SESSION_CHECKOUTS]


def access_checkout_by_uuid(*, request: HttpRequest, tenant: Tenant, uuid: UUID) -> Checkout:
    """A checkout this session opened, at this clinic. Public (guest) access."""
    if str(uuid) not in request.session.get(SESSION_CHECKOUTS, []):
        raise Http404
    checkout = (
        Checkout.objects.select_related("statement", "statement__patient")
        .filter(tenant=tenant, public_id=uuid, channel=PaymentChannel.ONLINE)
        .first()
    )
    if checkout is None:
        raise Http404
    return checkout


def access_phone_checkout_by_uuid(*, tenant: Tenant, uuid: UUID) -> Checkout:
    """A phone checkout of this clinic. Callers have checked `payments.take_phone`.

    A patient's own (online) checkout is not a phone checkout: staff cannot
    charge through a patient's session, nor a patient through staff's.
    """
    checkout = (
        Checkout.objects.select_related("statement", "statement__patient", "opened_by")
        .filter(tenant=tenant, public_id=uuid, channel=PaymentChannel.PHONE)
        .first()
    )
    if checkout is None:
        raise Http404
    return checkout


def access_payment_by_uuid(*, checkout: Checkout, uuid: UUID) -> Payment:
    """A payment attempt of a checkout the caller already holds."""
    payment = Payment.objects.select_related("tenant", "statement").filter(checkout=checkout, public_id=uuid).first()
    if payment is None:
        raise Http404
    return payment


def access_patient_by_uuid(*, tenant: Tenant, uuid: UUID) -> Patient:
    """A patient of this clinic. Callers have checked `patients.view`."""
    patient = Patient.objects.filter(tenant=tenant, public_id=uuid).first()
    if patient is None:
        raise Http404
    return patient


def access_staff_payment_by_uuid(*, tenant: Tenant, uuid: UUID) -> Payment:
    """A payment of this clinic, for staff. Callers have checked the payment permission."""
    payment = (
        Payment.objects.select_related("tenant", "checkout", "statement", "patient")
        .filter(tenant=tenant, public_id=uuid)
        .first()
    )
    if payment is None:
        raise Http404
    return payment


def access_refund_by_uuid(*, tenant: Tenant, uuid: UUID) -> Refund:
    """A refund of this clinic; 404 for missing and another clinic's alike."""
    refund = (
        Refund.objects.select_related("payment", "payment__patient", "payment__statement", "requested_by", "decided_by")
        .filter(tenant=tenant, public_id=uuid)
        .first()
    )
    if refund is None:
        raise Http404
    return refund


def access_import_job_by_uuid(*, tenant: Tenant, uuid: UUID) -> ImportJob:
    """A statement import of this clinic. Callers have checked `statements.import`."""
    job = ImportJob.objects.select_related("created_by").filter(tenant=tenant, public_id=uuid).first()
    if job is None:
        raise Http404
    return job


def access_statement_by_uuid(*, tenant: Tenant, uuid: UUID) -> Statement:
    """A statement of this clinic; 404 for missing and another clinic's alike."""
    statement = Statement.objects.select_related("patient").filter(tenant=tenant, public_id=uuid).first()
    if statement is None:
        raise Http404
    return statement
