"""Audit coverage scenarios: signing in, second factor, lockout, password (see tests/audit/scenarios.py)."""

from __future__ import annotations

import re

from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.audit.scenarios import scenario
from tests.conftest import password_step, sign_in
from tests.factories import PERSONA_PASSWORD, RECOVERY_CODE, totp_code, totp_device


def _password_step(clinic, user):
    client = clinic.client()
    assert password_step(client, user.email).status_code == 302
    return client


@scenario("auth.mfa_verified")
def _mfa_verified(clinic) -> None:
    assert sign_in(clinic.client(), clinic.user("front_desk")).status_code == 302


@scenario("auth.otp_failed")
def _otp_failed(clinic) -> None:
    user = clinic.user("front_desk")
    totp_device(user)
    client = _password_step(clinic, user)
    assert client.post(reverse("staff:mfa"), {"otp_token": "000000"}).status_code == 400


@scenario("auth.locked_out")
def _locked_out(clinic) -> None:
    for n in range(10):
        clinic.client().post(
            reverse("staff:login"), {"username": clinic.user("front_desk").email, "password": f"wrong-{n}-password"}
        )


@scenario("auth.mfa_enrolled")
def _mfa_enrolled(clinic) -> None:
    user = clinic.user("billing_manager")
    client = _password_step(clinic, user)
    assert client.get(reverse("staff:mfa-enrol")).status_code == 200
    pending = TOTPDevice.objects.get(user=user, confirmed=False)
    assert client.post(reverse("staff:mfa-enrol"), {"otp_token": totp_code(pending)}).status_code == 200


@scenario("auth.recovery_codes_regenerated")
def _recovery_codes_regenerated(clinic) -> None:
    assert clinic.client_as("front_desk").post(reverse("staff:recovery-codes")).status_code == 200


@scenario("auth.recovery_code_used")
def _recovery_code_used(clinic) -> None:
    user = clinic.user("front_desk")
    page = clinic.client_as("front_desk").post(reverse("staff:recovery-codes")).content.decode()
    code = RECOVERY_CODE.findall(page)[0]
    client = _password_step(clinic, user)
    assert client.post(reverse("staff:mfa"), {"otp_token": code}).status_code == 302


@scenario("auth.password_changed")
def _password_changed(clinic) -> None:
    response = clinic.client_as("front_desk").post(
        reverse("staff:password-change"),
        {
            "old_password": PERSONA_PASSWORD,
            "new_password1": "amber-orchard-9921-x",
            "new_password2": "amber-orchard-9921-x",
        },
    )
    assert response.status_code == 302


# --- Password recovery (security.recovery) -------------------------------------------------------


def _reset_link_path() -> str:
    from django.core import mail

    match = re.search(r"https?://[^\s/]+(/staff/password/reset/[A-Za-z0-9_-]+/)", str(mail.outbox[-1].body))
    assert match
    return match.group(1)


@scenario("auth.password_reset_requested")
def _password_reset_requested(clinic, capture) -> None:
    with capture(execute=True):
        response = clinic.client().post(reverse("staff:password-forgot"), {"email": clinic.user("front_desk").email})
    assert response.status_code == 200


@scenario("auth.password_reset_refused")
def _password_reset_refused(clinic) -> None:
    response = clinic.client().get(reverse("staff:password-reset", kwargs={"token": "B" * 43}))
    assert response.status_code == 404


@scenario("staff.password_reset_sent")
def _password_reset_sent(clinic, capture) -> None:
    from portal.tenancy.context import tenant_scope
    from security.models import Membership

    with tenant_scope(clinic.tenant):
        membership = Membership.objects.get(tenant=clinic.tenant, user=clinic.user("front_desk"))
    url = reverse("team:member-password-reset", kwargs={"membership_id": membership.public_id})
    with capture(execute=True):
        assert clinic.client_as("clinic_admin").post(url).status_code == 302


@scenario("auth.password_reset_completed")
def _password_reset_completed(clinic, capture) -> None:
    _password_reset_sent(clinic, capture)
    client = clinic.client()
    assert client.get(_reset_link_path()).status_code == 302
    password = "Quarry-lantern-51-meadow"
    response = client.post(
        reverse("staff:password-reset", kwargs={"token": "set"}), {"password": password, "password_confirm": password}
    )
    assert response.status_code == 302
