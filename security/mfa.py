"""The second factor: TOTP authenticator apps and one-time recovery codes (django-otp).

- Every staff member and platform operator has exactly one confirmed TOTP
  device. Enrolment creates an unconfirmed device, shows its secret as a QR
  code and in text, and confirms it only when a code from the app matches.
- Confirming also issues RECOVERY_CODE_COUNT recovery codes, shown once.
  They are stored as keyed hashes (a database dump does not reveal them) in
  django-otp's static device; each works once.
- A TOTP code is accepted once: django-otp keeps the last time step used and
  refuses it and anything earlier (a replayed code fails).
- Wrong codes are throttled by django-otp (exponential delay) and counted
  toward lockout with wrong passwords (security.login_lockout).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import segno
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django_otp import login as otp_login
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.recorder import audit_record
from security.login_lockout import FACTOR_OTP, login_failure_record, login_failures_clear, sign_in_allowed
from security.models import User

RECOVERY_CODE_COUNT = 10
RECOVERY_CODE_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
RECOVERY_CODE_LENGTH = 10
TOTP_DEVICE_NAME = "Authenticator app"
RECOVERY_DEVICE_NAME = "Recovery codes"
# A six-digit code or a recovery code; anything longer is refused unread.
MAX_CODE_LENGTH = 32


class MfaError(Exception):
    """A second-factor step that cannot proceed; the message is for the user."""


class MfaLockedError(MfaError):
    def __init__(self) -> None:
        super().__init__("Too many failed attempts. This account is locked for 30 minutes.")


class MfaThrottledError(MfaError):
    pass


def totp_device_confirmed(user: User) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def mfa_enrolled(user: User) -> bool:
    return bool(TOTPDevice.objects.filter(user=user, confirmed=True).exists())


def mfa_enrolled_user_ids(user_ids: list[int]) -> set[int]:
    return set(TOTPDevice.objects.filter(user_id__in=user_ids, confirmed=True).values_list("user_id", flat=True))


# --- Enrolment -------------------------------------------------------------------------


@dataclass(frozen=True)
class Enrolment:
    device: TOTPDevice
    secret_base32: str
    otpauth_uri: str
    qr_svg: str


def mfa_enrolment_begin(*, user: User) -> Enrolment:
    """The pending (unconfirmed) authenticator for `user`, created on first call.

    Refused once a device is confirmed: enrolling a new app then needs a
    clinic admin's MFA reset, so a stolen password alone cannot add one.
    """
    if mfa_enrolled(user):
        raise MfaError("An authenticator app is already set up for this account.")
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)
    uri = device.config_url
    qr = segno.make(uri, error="m")
    svg = qr.svg_inline(scale=5, dark="#0b1f33", light="#ffffff", title="Authenticator set-up code")
    secret = base64.b32encode(device.bin_key).decode().rstrip("=")
    return Enrolment(device=device, secret_base32=secret, otpauth_uri=uri, qr_svg=svg)


def _clean_code(code: str) -> str:
    return "".join(code.split()).replace("-", "").lower()


def _is_totp_shaped(cleaned: str, device: TOTPDevice) -> bool:
    """Digits only, as many as the app shows: tried as a TOTP code, not as a recovery code."""
    return cleaned.isdigit() and len(cleaned) == device.digits


def mfa_enrolment_confirm(*, request: HttpRequest, user: User, code: str) -> list[str]:
    """Confirm the pending authenticator with a code from it; returns the new recovery codes.

    On success the session is verified (django_otp.login) and the event
    audited (auth.mfa_enrolled). A wrong code counts toward lockout.
    """
    if not sign_in_allowed(request, email=user.email):
        raise MfaLockedError
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    if device is None or mfa_enrolled(user):
        raise MfaError("There is no authenticator waiting to be confirmed; start again.")
    cleaned = _clean_code(code)
    if not _is_totp_shaped(cleaned, device) or not device.verify_token(cleaned):
        if login_failure_record(request, email=user.email, factor=FACTOR_OTP):
            raise MfaLockedError
        raise MfaError("That code did not match. Check the time on your phone and enter the newest code.")
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        codes = _recovery_codes_replace(user)
        audit_record(
            action="auth.mfa_enrolled",
            tenant=getattr(request, "tenant", None),
            actor=user,
            target_type="user",
            target_id=str(user.public_id),
            request=request,
        )
    otp_login(request, device)
    login_failures_clear(email=user.email)
    return codes


# --- Verification at sign-in --------------------------------------------------------------


def mfa_verify(*, request: HttpRequest, user: User, code: str) -> None:
    """Accept a TOTP code or a recovery code for `user` and mark the session verified.

    Raises MfaLockedError while the account or IP is locked (even for a right
    code), MfaThrottledError while django-otp's back-off runs, MfaError for a
    wrong code (counted toward lockout). Audited: auth.mfa_verified, or
    auth.recovery_code_used when a recovery code was spent.
    """
    if not sign_in_allowed(request, email=user.email):
        raise MfaLockedError
    device = totp_device_confirmed(user)
    if device is None:
        raise MfaError("This account has no authenticator app set up yet.")
    cleaned = _clean_code(code)[: MAX_CODE_LENGTH + 1]
    allowed, _ = device.verify_is_allowed()
    if not allowed:
        raise MfaThrottledError("Too many wrong codes in a row. Wait a few seconds, then try the newest code.")
    if _is_totp_shaped(cleaned, device):
        # verify_token counts a wrong code toward django-otp's back-off itself.
        accepted = device.verify_token(cleaned)
    else:
        accepted = len(cleaned) == RECOVERY_CODE_LENGTH and _recovery_code_spend(user, cleaned)
        if accepted:
            _recovery_code_used_record(request=request, user=user)
        else:
            device.throttle_increment(commit=True)
    if not accepted:
        if login_failure_record(request, email=user.email, factor=FACTOR_OTP):
            raise MfaLockedError
        raise MfaError("That code did not match. Enter the newest code from your authenticator app.")
    otp_login(request, device)
    login_failures_clear(email=user.email)
    with transaction.atomic():
        audit_record(
            action="auth.mfa_verified",
            tenant=getattr(request, "tenant", None),
            actor=user,
            request=request,
        )


# --- Recovery codes ---------------------------------------------------------------------


def _recovery_hash(code: str) -> str:
    # 16 characters fit django-otp's token column: 80 bits of a keyed hash.
    digest = hmac.new(settings.SECRET_KEY.encode(), b"settle-recovery\x1f" + code.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:10]).decode()


def _new_recovery_code() -> str:
    return "".join(secrets.choice(RECOVERY_CODE_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))


def _recovery_codes_replace(user: User) -> list[str]:
    device, _ = StaticDevice.objects.get_or_create(user=user, defaults={"name": RECOVERY_DEVICE_NAME})
    device.token_set.all().delete()
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=_recovery_hash(c)) for c in codes])
    return [f"{c[:5]}-{c[5:]}" for c in codes]


def _recovery_code_spend(user: User, cleaned: str) -> bool:
    with transaction.atomic():
        deleted, _ = StaticToken.objects.filter(device__user=user, token=_recovery_hash(cleaned)).delete()
    return bool(deleted > 0)


def _recovery_code_used_record(*, request: HttpRequest, user: User) -> None:
    with transaction.atomic():
        audit_record(
            action="auth.recovery_code_used",
            tenant=getattr(request, "tenant", None),
            actor=user,
            target_type="user",
            target_id=str(user.public_id),
            request=request,
            details={"remaining": recovery_codes_remaining(user)},
        )


def recovery_codes_remaining(user: User) -> int:
    return int(StaticToken.objects.filter(device__user=user).count())


def recovery_codes_regenerate(*, request: HttpRequest, user: User) -> list[str]:
    """New recovery codes for a verified user; the old ones stop working. Audited."""
    with transaction.atomic():
        codes = _recovery_codes_replace(user)
        audit_record(
            action="auth.recovery_codes_regenerated",
            tenant=getattr(request, "tenant", None),
            actor=user,
            target_type="user",
            target_id=str(user.public_id),
            request=request,
        )
    return codes


def mfa_devices_remove(*, user: User) -> None:
    """Delete every second factor of `user` (MFA reset); the caller audits and ends sessions."""
    TOTPDevice.objects.filter(user=user).delete()
    StaticDevice.objects.filter(user=user).delete()
