"""Sign-in lockout (django-axes): 10 failures, 30 minutes, per account and per IP.

Wrong passwords and wrong one-time codes count together; a forged
X-Forwarded-For changes nothing; an unknown email is treated exactly like a
known one; a clinic admin's unlock is tested with the team pages.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from security.login_lockout import account_lockouts
from tests.factories import PERSONA_PASSWORD, totp_code, totp_device

pytestmark = pytest.mark.django_db

START = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
LOCKED_TEXT = "Signing in is locked"


def _attempt(clinic, email: str, password: str, *, ip: str = "198.51.100.7", forwarded: str | None = None):
    extra: dict[str, Any] = {"REMOTE_ADDR": ip}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    client = Client(HTTP_HOST=clinic.host, **extra)
    return client, client.post(reverse("staff:login"), {"username": email, "password": password})


def _fail(clinic, email: str, times: int, **kwargs) -> None:
    for n in range(times):
        _, response = _attempt(clinic, email, f"wrong-password-{n}", **kwargs)
        assert response.status_code in (400, 429)


def _is_locked(response) -> bool:
    return response.status_code == 429 and LOCKED_TEXT in response.content.decode()


def test_the_eleventh_attempt_is_refused_until_thirty_minutes_have_passed(clinic_a):
    email = clinic_a.user("front_desk").email
    with time_machine.travel(START, tick=False) as traveller:
        _fail(clinic_a, email, 9)
        _, tenth = _attempt(clinic_a, email, "wrong-password-x")
        assert _is_locked(tenth), "the 10th failure locks and says so"
        _, eleventh = _attempt(clinic_a, email, PERSONA_PASSWORD)
        assert _is_locked(eleventh), "the right password does not open a locked account"

        traveller.shift(timedelta(minutes=29))
        _, at_29 = _attempt(clinic_a, email, PERSONA_PASSWORD)
        assert _is_locked(at_29)

        traveller.shift(timedelta(minutes=2))
        _, at_31 = _attempt(clinic_a, email, PERSONA_PASSWORD)
        assert at_31.status_code == 302 and at_31["Location"].startswith("/staff/mfa")
    assert AuditEvent.objects.filter(action="auth.locked_out").count() >= 1


@pytest.mark.parametrize("proxies", [0, 1])
def test_a_forged_x_forwarded_for_does_not_dodge_the_lock(clinic_a, settings, proxies):
    """Each attempt claims another address; only the proxy-written entry (or the socket) counts."""
    settings.SETTLE_TRUSTED_PROXY_COUNT = proxies
    email = clinic_a.user("front_desk").email
    with time_machine.travel(START, tick=False) as traveller:
        for n in range(10):
            forged = f"203.0.113.{n}"
            header = f"{forged}, 192.0.2.50" if proxies else forged
            _attempt(clinic_a, email, f"wrong-{n}", ip="10.0.0.1", forwarded=header)
        # Another account from the same real client: the IP itself is locked.
        other = clinic_a.user("billing_manager").email
        header = "203.0.113.200, 192.0.2.50" if proxies else "203.0.113.200"
        _, response = _attempt(clinic_a, other, PERSONA_PASSWORD, ip="10.0.0.1", forwarded=header)
        assert _is_locked(response)
        traveller.shift(timedelta(minutes=29))
        _, response = _attempt(clinic_a, other, PERSONA_PASSWORD, ip="10.0.0.1", forwarded="198.18.0.1, 192.0.2.50")
        assert _is_locked(response)


def test_an_ip_is_locked_after_ten_failures_across_accounts(clinic_a):
    with time_machine.travel(START, tick=False):
        for n in range(10):
            _attempt(clinic_a, f"nobody{n}@example.com", "wrong-password-1", ip="198.51.100.99")
        _, same_ip = _attempt(clinic_a, clinic_a.user("front_desk").email, PERSONA_PASSWORD, ip="198.51.100.99")
        assert _is_locked(same_ip)
        _, other_ip = _attempt(clinic_a, clinic_a.user("front_desk").email, PERSONA_PASSWORD, ip="198.51.100.1")
        assert other_ip.status_code == 302, "the account itself is not locked"


def test_an_account_is_locked_after_ten_failures_from_many_ips(clinic_a):
    email = clinic_a.user("front_desk").email
    with time_machine.travel(START, tick=False):
        for n in range(10):
            _attempt(clinic_a, email, "wrong-password-1", ip=f"198.51.100.{n + 10}")
        _, response = _attempt(clinic_a, email, PERSONA_PASSWORD, ip="192.0.2.77")
        assert _is_locked(response)
        # Case and spaces do not make another account.
        _, response = _attempt(clinic_a, f"  {email.upper()} ", PERSONA_PASSWORD, ip="192.0.2.78")
        assert _is_locked(response)
        assert email in account_lockouts(emails=[email])


def test_wrong_codes_count_with_wrong_passwords(clinic_a):
    user = clinic_a.user("front_desk")
    device = totp_device(user)
    with time_machine.travel(START, tick=True) as traveller:
        _fail(clinic_a, user.email, 5)
        client, response = _attempt(clinic_a, user.email, PERSONA_PASSWORD)
        assert response.status_code == 302
        for n in range(4):
            traveller.shift(timedelta(seconds=20))  # past django-otp's back-off
            assert client.post(reverse("staff:mfa"), {"otp_token": f"00000{n}"}).status_code == 400
        traveller.shift(timedelta(seconds=20))
        locked = client.post(reverse("staff:mfa"), {"otp_token": "000009"})
        assert _is_locked(locked), "the 10th failure (5 passwords + 5 codes) locks"
        # The half-signed-in session ended; and even the right code is refused now.
        assert client.get("/staff/payments/")["Location"].startswith(reverse("staff:login"))
        client, response = _attempt(clinic_a, user.email, PERSONA_PASSWORD)
        assert _is_locked(response)
    assert AuditEvent.objects.filter(action="auth.otp_failed").count() == 5
    assert device.user_id == user.pk


def test_the_right_code_is_refused_while_locked(clinic_a):
    user = clinic_a.user("front_desk")
    device = totp_device(user)
    with time_machine.travel(START, tick=False):
        client, response = _attempt(clinic_a, user.email, PERSONA_PASSWORD)
        assert response.status_code == 302
        # Meanwhile someone else exhausts the account's failures.
        _fail(clinic_a, user.email, 10, ip="198.51.100.200")
        refused = client.post(reverse("staff:mfa"), {"otp_token": totp_code(device)})
        assert _is_locked(refused)


def test_an_unknown_email_is_locked_exactly_like_a_known_one(clinic_a):
    known = clinic_a.user("front_desk").email
    unknown = "no-account-here@example.com"
    with time_machine.travel(START, tick=False):
        _fail(clinic_a, known, 10, ip="198.51.100.31")
        _fail(clinic_a, unknown, 10, ip="198.51.100.32")
        _, known_response = _attempt(clinic_a, known, "whatever-123", ip="198.51.100.33")
        _, unknown_response = _attempt(clinic_a, unknown, "whatever-123", ip="198.51.100.34")
    assert known_response.status_code == unknown_response.status_code == 429
    assert known_response.content == unknown_response.content


def test_wrong_password_message_does_not_say_whether_the_email_exists(clinic_a):
    _, known = _attempt(clinic_a, clinic_a.user("front_desk").email, "wrong-password-1", ip="198.51.100.41")
    _, unknown = _attempt(clinic_a, "nobody@example.com", "wrong-password-1", ip="198.51.100.42")
    assert known.status_code == unknown.status_code == 400
    message = "That email and password do not match an account."
    assert message in known.content.decode() and message in unknown.content.decode()


def test_signing_in_with_both_factors_clears_the_account_count(clinic_a):
    user = clinic_a.user("front_desk")
    device = totp_device(user)
    with time_machine.travel(START, tick=False):
        _fail(clinic_a, user.email, 9, ip="198.51.100.51")
        client, response = _attempt(clinic_a, user.email, PERSONA_PASSWORD, ip="198.51.100.52")
        assert client.post(reverse("staff:mfa"), {"otp_token": totp_code(device)}).status_code == 302
        _fail(clinic_a, user.email, 9, ip="198.51.100.53")
        _, response = _attempt(clinic_a, user.email, PERSONA_PASSWORD, ip="198.51.100.54")
        assert response.status_code == 302


def test_a_password_alone_does_not_clear_the_count(clinic_a):
    """Otherwise a known password would buy unlimited guesses at the code."""
    user = clinic_a.user("front_desk")
    with time_machine.travel(START, tick=False):
        _fail(clinic_a, user.email, 9, ip="198.51.100.61")
        _attempt(clinic_a, user.email, PERSONA_PASSWORD, ip="198.51.100.62")
        _, response = _attempt(clinic_a, user.email, "wrong-password-again", ip="198.51.100.63")
        assert _is_locked(response)


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"username": "not-an-email", "password": "x"},
        {"username": "a" * 5000 + "@example.com", "password": "x"},
        {"username": "ann@example.com", "password": "p" * 10_000},
    ],
)
def test_malformed_sign_in_forms_get_400_not_a_server_error(clinic_a, data):
    response = Client(HTTP_HOST=clinic_a.host).post(reverse("staff:login"), data)
    assert response.status_code == 400
