"""Signing in with a second factor: enrolment, codes, recovery codes, replay, throttling."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AuditEvent
from security.mfa import RECOVERY_CODE_COUNT
from tests.conftest import login_verified, password_step, sign_in
from tests.factories import RECOVERY_CODE, totp_code, totp_device

pytestmark = pytest.mark.django_db

START = datetime(2026, 5, 4, 9, 0, 10, tzinfo=UTC)
PAYMENTS = "/staff/payments/"


def _code_from_page(html: str, *, at: float | None = None) -> str:
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', html)
    assert secret, "the enrolment page shows the secret in text"
    padded = secret.group(1) + "=" * (-len(secret.group(1)) % 8)
    generator = TOTP(base64.b32decode(padded))
    if at is not None:
        generator.time = at
    return str(generator.token()).zfill(6)


def test_first_sign_in_enrols_an_authenticator_then_shows_ten_recovery_codes_once(clinic_a):
    user = clinic_a.user("billing_manager")
    client = clinic_a.client()
    with time_machine.travel(START, tick=False) as traveller:
        response = password_step(client, user.email, next_url=PAYMENTS)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("staff:mfa-enrol"))

        page = client.get(response["Location"])
        html = page.content.decode()
        assert page.status_code == 200 and "<svg" in html, "a QR code is shown"
        # Not yet verified: staff pages still send the session to the second factor.
        assert client.get(PAYMENTS)["Location"].startswith(reverse("staff:mfa"))

        wrong = client.post(response["Location"], {"otp_token": "000000"})
        assert wrong.status_code == 400 and "did not match" in wrong.content.decode()
        assert not TOTPDevice.objects.filter(user=user, confirmed=True).exists()

        traveller.shift(timedelta(seconds=5))  # past the back-off the wrong code started
        done = client.post(response["Location"], {"otp_token": _code_from_page(html)})
        assert done.status_code == 200
        codes = RECOVERY_CODE.findall(done.content.decode())
        assert len(codes) == RECOVERY_CODE_COUNT == 10
        assert TOTPDevice.objects.filter(user=user, confirmed=True).count() == 1
        # Stored only as keyed hashes.
        stored = set(StaticToken.objects.filter(device__user=user).values_list("token", flat=True))
        assert len(stored) == 10 and not stored & {c.replace("-", "") for c in codes}
        assert client.get(PAYMENTS).status_code == 200
    assert AuditEvent.objects.filter(action="auth.mfa_enrolled", actor_user_id=user.public_id).count() == 1


def test_enrolment_is_refused_once_an_authenticator_is_set_up(clinic_a):
    """A stolen password alone cannot add the thief's own authenticator."""
    user = clinic_a.user("front_desk")
    device = totp_device(user)
    client = clinic_a.client()
    password_step(client, user.email)
    response = client.get(reverse("staff:mfa-enrol"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("staff:mfa"))
    posted = client.post(reverse("staff:mfa-enrol"), {"otp_token": "123456"})
    assert posted.status_code == 302
    assert list(TOTPDevice.objects.filter(user=user)) == [device]


def test_password_then_code_signs_in_and_goes_to_next(clinic_a):
    user = clinic_a.user("front_desk")
    device = totp_device(user)
    client = clinic_a.client()
    response = password_step(client, user.email, next_url=PAYMENTS)
    assert response["Location"].startswith(reverse("staff:mfa"))
    verified = client.post(response["Location"], {"otp_token": totp_code(device)})
    assert verified.status_code == 302 and verified["Location"] == PAYMENTS
    assert client.get(PAYMENTS).status_code == 200
    assert AuditEvent.objects.filter(action="auth.mfa_verified").count() == 1


def test_next_may_not_leave_the_host(clinic_a):
    user = clinic_a.user("front_desk")
    device = totp_device(user)
    client = clinic_a.client()
    response = password_step(client, user.email, next_url="https://evil.example/")
    verified = client.post(response["Location"], {"otp_token": totp_code(device)})
    assert verified["Location"] == reverse("staff:dashboard")


def test_a_replayed_code_is_refused(clinic_a):
    user = clinic_a.user("front_desk")
    device = totp_device(user)
    with time_machine.travel(START, tick=False):
        code = totp_code(device)
        first = Client(HTTP_HOST=clinic_a.host)
        password_step(first, user.email)
        assert first.post(reverse("staff:mfa"), {"otp_token": code}).status_code == 302
        # Same code, same 30-second step, another session: refused.
        second = Client(HTTP_HOST=clinic_a.host)
        password_step(second, user.email)
        replay = second.post(reverse("staff:mfa"), {"otp_token": code})
        assert replay.status_code == 400
        assert second.get(PAYMENTS)["Location"].startswith(reverse("staff:mfa"))
    assert AuditEvent.objects.filter(action="auth.otp_failed").count() == 1


def test_a_recovery_code_works_once(clinic_a):
    user = clinic_a.user("front_desk")
    client = clinic_a.client()
    password_step(client, user.email)
    html = client.get(reverse("staff:mfa-enrol")).content.decode()
    done = client.post(reverse("staff:mfa-enrol"), {"otp_token": _code_from_page(html)})
    codes = RECOVERY_CODE.findall(done.content.decode())

    other = clinic_a.client()
    password_step(other, user.email)
    used = other.post(reverse("staff:mfa"), {"otp_token": codes[3].upper()})
    assert used.status_code == 302 and other.get(PAYMENTS).status_code == 200
    assert StaticToken.objects.filter(device__user=user).count() == 9

    again = clinic_a.client()
    password_step(again, user.email)
    assert again.post(reverse("staff:mfa"), {"otp_token": codes[3]}).status_code == 400
    event = AuditEvent.objects.get(action="auth.recovery_code_used")
    assert event.details == {"remaining": 9}


def test_new_recovery_codes_replace_the_old_ones(clinic_a):
    client = clinic_a.client_as("front_desk")
    user = clinic_a.user("front_desk")
    first = client.post(reverse("staff:recovery-codes"))
    old = RECOVERY_CODE.findall(first.content.decode())
    second = client.post(reverse("staff:recovery-codes"))
    new = RECOVERY_CODE.findall(second.content.decode())
    assert len(old) == len(new) == 10 and not set(old) & set(new)
    signing_in = clinic_a.client()
    password_step(signing_in, user.email)
    with time_machine.travel(START, tick=False):
        assert signing_in.post(reverse("staff:mfa"), {"otp_token": old[0]}).status_code == 400
    with time_machine.travel(START + timedelta(seconds=5), tick=False):
        assert signing_in.post(reverse("staff:mfa"), {"otp_token": new[0]}).status_code == 302


def test_wrong_codes_are_throttled_by_the_device(clinic_a):
    user = clinic_a.user("front_desk")
    device = totp_device(user)
    client = clinic_a.client()
    password_step(client, user.email)
    with time_machine.travel(START, tick=False):
        assert client.post(reverse("staff:mfa"), {"otp_token": "111111"}).status_code == 400
        assert client.post(reverse("staff:mfa"), {"otp_token": "222222"}).status_code == 400
        # Back-off: even the right code waits until the delay has passed.
        throttled = client.post(reverse("staff:mfa"), {"otp_token": totp_code(device)})
        assert throttled.status_code == 400 and "Wait a few seconds" in throttled.content.decode()
    with time_machine.travel(START + timedelta(seconds=40), tick=False):
        assert client.post(reverse("staff:mfa"), {"otp_token": totp_code(device)}).status_code == 302


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abc", "x" * 5000, "12 34 56 78 90"])
def test_malformed_codes_get_a_clear_message_and_no_server_error(clinic_a, code):
    user = clinic_a.user("front_desk")
    totp_device(user)
    client = clinic_a.client()
    password_step(client, user.email)
    response = client.post(reverse("staff:mfa"), {"otp_token": code})
    assert response.status_code == 400
    assert 'class="field-error"' in response.content.decode()


def test_the_code_step_needs_the_password_step_first(clinic_a):
    response = clinic_a.client().post(reverse("staff:mfa"), {"otp_token": "123456"})
    assert response.status_code == 302 and response["Location"] == reverse("staff:login")


def test_platform_operators_sign_in_to_the_admin_with_both_factors(db, settings):
    from tests.factories import UserFactory

    operator = UserFactory.create(
        email="op@settle.example", is_platform_operator=True, is_staff=True, is_superuser=True
    )
    device = totp_device(operator)
    client = Client(HTTP_HOST=settings.SETTLE_PLATFORM_HOST)
    response = client.get("/admin/")
    assert response.status_code == 302
    login_page = client.get(response["Location"], follow=True)
    assert login_page.status_code == 200
    step = password_step(client, operator.email, next_url="/admin/")
    assert step["Location"].startswith(reverse("staff:mfa"))
    assert client.get("/admin/portal/tenant/").status_code == 302
    verified = client.post(step["Location"], {"otp_token": totp_code(device)})
    assert verified["Location"] == "/admin/"
    assert client.get("/admin/portal/tenant/").status_code == 200


def test_a_verified_non_operator_gets_no_admin(db, settings, outsider):
    client = Client(HTTP_HOST=settings.SETTLE_PLATFORM_HOST)
    login_verified(client, outsider)
    assert client.get("/admin/login/").status_code == 403


def test_sign_in_helper_signs_in_with_both_factors(clinic_a):
    client = clinic_a.client()
    assert sign_in(client, clinic_a.user("front_desk")).status_code == 302
    assert client.get(PAYMENTS).status_code == 200
