"""{% load roles %}: {{ membership.role|role_phrase }} -> "a front desk staff member"."""

from __future__ import annotations

from django import template

from security.roles import role_phrase as _role_phrase

register = template.Library()


@register.filter
def role_phrase(role: str) -> str:
    return _role_phrase(str(role))
