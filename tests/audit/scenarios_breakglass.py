"""Audit coverage scenarios: breakglass (see tests/audit/scenarios.py)."""

from __future__ import annotations
