"""Lockout: at most 10 failures, then at least 30 minutes, per key."""

from __future__ import annotations

import datetime

import pytest
import time_machine
from django.http import HttpRequest
from django.test import RequestFactory

from portal.net import client_ip
from security import lockout

pytestmark = pytest.mark.django_db

START = datetime.datetime(2026, 11, 23, 9, 0, tzinfo=datetime.UTC)


def test_the_eleventh_attempt_is_refused_and_the_lock_lasts_thirty_minutes():
    key = lockout.lockout_key("ip", "203.0.113.5")
    with time_machine.travel(START, tick=False) as traveller:
        for attempt in range(1, 10):
            assert lockout.is_locked(key) is False, f"attempt {attempt} must be allowed"
            assert lockout.record_failure(key) is False
        assert lockout.is_locked(key) is False, "the 10th attempt is still allowed"
        assert lockout.record_failure(key) is True, "the 10th failure locks"
        assert lockout.is_locked(key) is True, "the 11th attempt is refused"
        assert lockout.any_locked([lockout.lockout_key("ip", "198.51.100.1"), key]) is True

        traveller.shift(datetime.timedelta(minutes=29))
        assert lockout.is_locked(key) is True, "still locked at +29 minutes"
        assert lockout.record_failure(key) is True, "failures while locked do not unlock"

        traveller.shift(datetime.timedelta(minutes=2))
        assert lockout.is_locked(key) is False, "open again at +31 minutes"
        assert lockout.record_failure(key) is False, "counting starts again after the lock"


def test_failures_spread_beyond_the_window_do_not_lock():
    key = lockout.lockout_key("account", "someone@example.com")
    with time_machine.travel(START, tick=False) as traveller:
        for _ in range(9):
            lockout.record_failure(key)
        traveller.shift(datetime.timedelta(minutes=31))
        assert lockout.record_failure(key) is False
        assert lockout.is_locked(key) is False


def test_keys_are_independent_and_reset_clears_one():
    locked = lockout.lockout_key("ip", "203.0.113.9")
    other = lockout.lockout_key("ip", "203.0.113.10")
    with time_machine.travel(START, tick=False):
        for _ in range(lockout.LOCKOUT_THRESHOLD):
            lockout.record_failure(locked)
        assert lockout.is_locked(locked) and not lockout.is_locked(other)
        lockout.reset(locked)
        assert not lockout.is_locked(locked)


def test_keys_name_their_subject_without_storing_it():
    key = lockout.lockout_key("account", "someone@example.com")
    assert "someone" not in key and len(key) == 64
    assert key != lockout.lockout_key("ip", "someone@example.com")


# --- the address lockout counts against ------------------------------------------------------


def _request(remote: str, forwarded: str | None = None) -> HttpRequest:
    if forwarded is None:
        return RequestFactory().get("/", REMOTE_ADDR=remote)
    return RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)


@pytest.mark.parametrize("forwarded", [None, "6.6.6.6", "6.6.6.6, 7.7.7.7", "not-an-ip"])
def test_without_a_trusted_proxy_the_socket_address_is_used(settings, forwarded):
    settings.SETTLE_TRUSTED_PROXY_COUNT = 0
    assert client_ip(_request("198.51.100.7", forwarded)) == "198.51.100.7"


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        ("198.51.100.7", "198.51.100.7"),  # what our proxy appended
        ("6.6.6.6, 198.51.100.7", "198.51.100.7"),  # forged entry on the left is ignored
        ("1.1.1.1, 2.2.2.2, 198.51.100.7", "198.51.100.7"),
        ("", "10.0.0.2"),  # no header: the proxy itself
        ("6.6.6.6, not-an-ip", "10.0.0.2"),  # garbage in the trusted slot: the proxy
    ],
)
def test_behind_one_proxy_only_the_proxy_written_entry_counts(settings, forwarded, expected):
    settings.SETTLE_TRUSTED_PROXY_COUNT = 1
    assert client_ip(_request("10.0.0.2", forwarded)) == expected


def test_a_forged_header_cannot_dodge_the_lockout(settings):
    """Each retry with a new forged X-Forwarded-For still counts against one address."""
    settings.SETTLE_TRUSTED_PROXY_COUNT = 1
    with time_machine.travel(START, tick=False):
        locked = False
        for attempt in range(lockout.LOCKOUT_THRESHOLD):
            request = _request("10.0.0.2", f"203.0.113.{attempt}, 198.51.100.7")
            locked = lockout.record_failure(lockout.lockout_key("ip", client_ip(request)))
        assert locked
        forged = _request("10.0.0.2", "192.0.2.200, 198.51.100.7")
        assert lockout.is_locked(lockout.lockout_key("ip", client_ip(forged)))


def test_a_key_can_carry_its_own_threshold_and_duration():
    """Guest look-ups pass their clinic's numbers (security.lookup_policy)."""
    key = lockout.lockout_key("lookup-ip", "1", "203.0.113.20")
    duration = datetime.timedelta(minutes=45)
    with time_machine.travel(START, tick=False) as traveller:
        assert [lockout.record_failure(key, threshold=3, duration=duration) for _ in range(3)] == [False, False, True]
        traveller.shift(datetime.timedelta(minutes=44))
        assert lockout.is_locked(key), "still locked at +44 minutes"
        traveller.shift(datetime.timedelta(minutes=2))
        assert not lockout.is_locked(key), "open again at +46 minutes"
