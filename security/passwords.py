"""Password rules for staff and for patients.

- Staff (every non-patient role and platform operators): at least 12
  characters with at least one letter and one digit (PCI DSS 8.3.6).
- Patients: no composition rules (NIST SP 800-63B 3.1.1.2); at least 15
  characters when the password is the only factor, 8 with a second factor.
- Both: refused when on the common/breached password list. The list is
  Django's own (about 20,000 most common passwords, gzip, shipped with
  Django), so the check works offline.

Services call `validate_password_for(...)`. AUTH_PASSWORD_VALIDATORS holds
the staff rule too, so `createsuperuser` and the admin's password forms (used
only by platform operators, who are staff) apply it.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.password_validation import (
    CommonPasswordValidator,
    UserAttributeSimilarityValidator,
)
from django.core.exceptions import ValidationError

from security.models import Role

STAFF_MIN_LENGTH = 12
PATIENT_MIN_LENGTH_SINGLE_FACTOR = 15
PATIENT_MIN_LENGTH_WITH_MFA = 8
# Long passphrases are welcome; the cap only bounds the hashing work.
MAX_LENGTH = 256

# A platform operator is not a Role of any tenant, but follows the staff rule.
PLATFORM_OPERATOR = "platform_operator"


class StaffPasswordValidator:
    """At least 12 characters, at least one letter and one digit (PCI DSS 8.3.6)."""

    def __init__(self, min_length: int = STAFF_MIN_LENGTH) -> None:
        self.min_length = min_length

    def validate(self, password: str, user: Any = None) -> None:
        errors: list[ValidationError] = []
        if len(password) < self.min_length:
            errors.append(
                ValidationError(
                    "Staff passwords must be at least %(min_length)d characters long.",
                    code="password_too_short",
                    params={"min_length": self.min_length},
                )
            )
        if len(password) > MAX_LENGTH:
            errors.append(
                ValidationError(
                    "Passwords can be at most %(max_length)d characters long.",
                    code="password_too_long",
                    params={"max_length": MAX_LENGTH},
                )
            )
        if not any(ch.isalpha() for ch in password) or not any(ch.isdigit() for ch in password):
            errors.append(
                ValidationError(
                    "Staff passwords must contain at least one letter and at least one digit.",
                    code="password_needs_letters_and_digits",
                )
            )
        if errors:
            raise ValidationError(errors)

    def get_help_text(self) -> str:
        return f"Use at least {self.min_length} characters, with at least one letter and one digit."


class PatientPasswordValidator:
    """Length only (NIST SP 800-63B): 15+ as the only factor, 8+ with a second factor."""

    def __init__(self, *, has_second_factor: bool = False) -> None:
        self.min_length = PATIENT_MIN_LENGTH_WITH_MFA if has_second_factor else PATIENT_MIN_LENGTH_SINGLE_FACTOR

    def validate(self, password: str, user: Any = None) -> None:
        if len(password) < self.min_length:
            raise ValidationError(
                "Your password must be at least %(min_length)d characters long. "
                "A few unrelated words make a strong one that is easy to remember.",
                code="password_too_short",
                params={"min_length": self.min_length},
            )
        if len(password) > MAX_LENGTH:
            raise ValidationError(
                "Passwords can be at most %(max_length)d characters long.",
                code="password_too_long",
                params={"max_length": MAX_LENGTH},
            )

    def get_help_text(self) -> str:
        return f"Use at least {self.min_length} characters. Any characters are allowed, spaces too."


class BreachedPasswordValidator(CommonPasswordValidator):
    """Refuse passwords on the offline common/breached list (Django's, case-insensitive)."""

    def validate(self, password: str, user: Any = None) -> None:
        if password.lower().strip() in self.passwords:
            raise ValidationError(
                "This password appears in lists of common or breached passwords; choose another.",
                code="password_breached",
            )

    def get_help_text(self) -> str:
        return "Your password can't be one that appears in lists of common or breached passwords."


def is_staff_role(role: str) -> bool:
    return role != Role.PATIENT


def validate_password_for(*, user: Any | None, password: str, role: str, has_second_factor: bool = False) -> None:
    """Check `password` against the rule for `role`; raises ValidationError with every problem.

    `role` is a security.models.Role value or PLATFORM_OPERATOR. Pure: no
    side effects, no permission needed (callers decide who may set what).
    """
    if role not in Role.values and role != PLATFORM_OPERATOR:
        raise ValueError(f"unknown role {role!r}")
    validators: list[Any] = [
        StaffPasswordValidator()
        if is_staff_role(role)
        else PatientPasswordValidator(has_second_factor=has_second_factor),
        BreachedPasswordValidator(),
    ]
    if user is not None:
        validators.append(UserAttributeSimilarityValidator(user_attributes=("email", "full_name")))
    errors: list[ValidationError] = []
    for validator in validators:
        try:
            validator.validate(password, user)
        except ValidationError as error:
            errors.extend(error.error_list)
    if errors:
        raise ValidationError(errors)
