"""Password rules: staff (PCI DSS 8.3.6), patients (NIST SP 800-63B), breached list."""

from __future__ import annotations

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError

from billing.demo import DEMO_PASSWORD
from security.models import Role, User
from security.passwords import PLATFORM_OPERATOR, validate_password_for
from tests.factories import PERSONA_PASSWORD

STAFF_ROLES = [role.value for role in Role if role != Role.PATIENT] + [PLATFORM_OPERATOR]


def _codes(excinfo: pytest.ExceptionInfo[ValidationError]) -> set[str]:
    return {error.code or "" for error in excinfo.value.error_list}


@pytest.mark.parametrize("role", STAFF_ROLES)
def test_staff_need_twelve_characters_with_letters_and_digits(role):
    validate_password_for(user=None, password="tulip-harbor-47", role=role)
    validate_password_for(user=None, password="tulip-harb47", role=role)  # exactly 12
    with pytest.raises(ValidationError) as short:
        validate_password_for(user=None, password="tulip-harb4", role=role)  # 11
    assert "password_too_short" in _codes(short)
    with pytest.raises(ValidationError) as no_digit:
        validate_password_for(user=None, password="tulip-harbor-lantern", role=role)
    assert _codes(no_digit) == {"password_needs_letters_and_digits"}
    with pytest.raises(ValidationError) as no_letter:
        validate_password_for(user=None, password="4711-0815-2342", role=role)
    assert _codes(no_letter) == {"password_needs_letters_and_digits"}


def test_staff_messages_are_clear():
    with pytest.raises(ValidationError) as excinfo:
        validate_password_for(user=None, password="abc", role=Role.FRONT_DESK)
    messages = " ".join(excinfo.value.messages)
    assert "at least 12 characters" in messages
    assert "at least one letter and at least one digit" in messages


def test_patients_have_no_composition_rules_but_need_fifteen_characters_alone():
    validate_password_for(user=None, password="correcthorsebattery", role=Role.PATIENT)  # letters only
    validate_password_for(user=None, password="ünïcödé pässwörd ✓", role=Role.PATIENT)  # spaces, unicode
    with pytest.raises(ValidationError) as excinfo:
        validate_password_for(user=None, password="fourteen-chars", role=Role.PATIENT)
    assert _codes(excinfo) == {"password_too_short"}
    assert "at least 15 characters" in excinfo.value.messages[0]
    # With a second factor, 8 characters are enough (NIST SP 800-63B).
    validate_password_for(user=None, password="lanterns", role=Role.PATIENT, has_second_factor=True)


@pytest.mark.parametrize("role", [Role.PATIENT.value, Role.CLINIC_ADMIN.value])
@pytest.mark.parametrize("password", ["password123456", "Password123456", "qwertyuiop123", "1q2w3e4r5t6y7u8i"])
def test_common_and_breached_passwords_are_refused(role, password):
    with pytest.raises(ValidationError) as excinfo:
        validate_password_for(user=None, password=password, role=role)
    assert "password_breached" in _codes(excinfo)
    assert "common or breached" in " ".join(excinfo.value.messages)


def test_password_like_the_email_is_refused():
    user = User(email="margaret.hamilton2024@example.com", full_name="Margaret Hamilton")
    with pytest.raises(ValidationError) as excinfo:
        validate_password_for(user=user, password="margaret.hamilton2024", role=Role.FRONT_DESK)
    assert "password_too_similar" in _codes(excinfo)


def test_unknown_role_is_a_programming_error():
    with pytest.raises(ValueError):
        validate_password_for(user=None, password="tulip-harbor-47", role="janitor")


def test_overlong_passwords_are_refused():
    with pytest.raises(ValidationError) as excinfo:
        validate_password_for(user=None, password="a1" * 200, role=Role.PATIENT)
    assert "password_too_long" in _codes(excinfo)


def test_django_validators_apply_the_staff_rule_for_createsuperuser_and_admin():
    validate_password("tulip-harbor-47")
    for bad in ("short1", "no-digits-at-all-here", "password1234"):
        with pytest.raises(ValidationError):
            validate_password(bad)


def test_demo_and_persona_passwords_pass_the_staff_rule():
    for password in (DEMO_PASSWORD, PERSONA_PASSWORD):
        validate_password(password)
        validate_password_for(user=None, password=password, role=Role.CLINIC_ADMIN)
