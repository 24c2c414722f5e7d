"""Audit coverage scenarios: signing in, second factor, lockout, password (see tests/audit/scenarios.py)."""

from __future__ import annotations
