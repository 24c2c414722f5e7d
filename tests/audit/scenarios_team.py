"""Audit coverage scenarios: team (see tests/audit/scenarios.py)."""

from __future__ import annotations
