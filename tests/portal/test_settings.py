"""Settings come from the environment, fail loudly, and production needs its secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from portal.env import env_bool, env_choice, env_int, env_list, env_required, env_secret, env_str
from tests.settings_probe import SETTINGS_PREFIXES, load_settings, production_environment

ROOT = Path(__file__).resolve().parents[2]


def clean_environment(extra: dict[str, str]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(SETTINGS_PREFIXES)}
    env.update(extra)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_manage(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# --- the readers ----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["maybe", "2", "enabled", "tru"])
def test_env_bool_refuses_what_it_cannot_read(monkeypatch, value):
    monkeypatch.setenv("SETTLE_PROBE", value)
    with pytest.raises(ImproperlyConfigured, match="SETTLE_PROBE"):
        env_bool("SETTLE_PROBE")


@pytest.mark.parametrize(
    ("value", "expected"), [("true", True), ("ON", True), ("1", True), ("no", False), ("0", False)]
)
def test_env_bool_reads_the_usual_spellings(monkeypatch, value, expected):
    monkeypatch.setenv("SETTLE_PROBE", value)
    assert env_bool("SETTLE_PROBE") is expected


def test_env_bool_default_when_unset(monkeypatch):
    monkeypatch.delenv("SETTLE_PROBE", raising=False)
    assert env_bool("SETTLE_PROBE", default=True) is True


@pytest.mark.parametrize("value", ["ten", "1.5", "0x10", "12 workers"])
def test_env_int_refuses_non_integers(monkeypatch, value):
    monkeypatch.setenv("SETTLE_PROBE", value)
    with pytest.raises(ImproperlyConfigured, match="not an integer"):
        env_int("SETTLE_PROBE", 5)


def test_env_int_enforces_its_minimum(monkeypatch):
    monkeypatch.setenv("SETTLE_PROBE", "-1")
    with pytest.raises(ImproperlyConfigured, match="below the minimum"):
        env_int("SETTLE_PROBE", 5, minimum=0)
    monkeypatch.setenv("SETTLE_PROBE", "7")
    assert env_int("SETTLE_PROBE", 5, minimum=0) == 7


def test_env_choice_refuses_unknown_values(monkeypatch):
    monkeypatch.setenv("SETTLE_PROBE", "staging")
    with pytest.raises(ImproperlyConfigured, match="must be one of"):
        env_choice("SETTLE_PROBE", ("development", "test", "production"), "development")


def test_env_list_splits_and_trims(monkeypatch):
    monkeypatch.setenv("SETTLE_PROBE", " a.example , ,b.example,")
    assert env_list("SETTLE_PROBE") == ["a.example", "b.example"]
    monkeypatch.delenv("SETTLE_PROBE")
    assert env_list("SETTLE_PROBE", ["x"]) == ["x"]


def test_env_str_distinguishes_unset_from_empty(monkeypatch):
    monkeypatch.delenv("SETTLE_PROBE", raising=False)
    assert env_str("SETTLE_PROBE", "fallback") == "fallback"
    monkeypatch.setenv("SETTLE_PROBE", "")
    assert env_str("SETTLE_PROBE", "fallback") == ""


def test_env_secret_reads_a_file_named_by_name_file(monkeypatch, tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cret-value\n")
    monkeypatch.setenv("SETTLE_PROBE_FILE", str(secret_file))
    monkeypatch.setenv("SETTLE_PROBE", "ignored-when-a-file-is-given")
    assert env_secret("SETTLE_PROBE") == "s3cret-value"


def test_env_secret_refuses_a_missing_file(monkeypatch, tmp_path):
    monkeypatch.setenv("SETTLE_PROBE_FILE", str(tmp_path / "nope"))
    with pytest.raises(ImproperlyConfigured, match="not a readable file"):
        env_secret("SETTLE_PROBE")


@pytest.mark.parametrize("value", [None, ""])
def test_env_required_refuses_missing_and_empty(monkeypatch, value):
    monkeypatch.delenv("SETTLE_PROBE_FILE", raising=False)
    if value is None:
        monkeypatch.delenv("SETTLE_PROBE", raising=False)
    else:
        monkeypatch.setenv("SETTLE_PROBE", value)
    with pytest.raises(ImproperlyConfigured, match="SETTLE_PROBE must be set"):
        env_required("SETTLE_PROBE")


# --- the settings module ------------------------------------------------------------------


def test_development_defaults_are_local_and_safe(monkeypatch, tmp_path):
    loaded = load_settings(monkeypatch, {"SETTLE_VAR_DIR": str(tmp_path / "var")})
    assert loaded["SETTLE_ENV"] == "development"
    assert loaded["DATABASES"]["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert loaded["CELERY_TASK_ALWAYS_EAGER"] is True
    assert loaded["STRIPE_API_BASE"].startswith("http://127.0.0.1:")


def test_a_bad_value_stops_the_settings(monkeypatch, tmp_path):
    with pytest.raises(ImproperlyConfigured, match="SETTLE_ENV"):
        load_settings(monkeypatch, {"SETTLE_ENV": "prod", "SETTLE_VAR_DIR": str(tmp_path)})
    with pytest.raises(ImproperlyConfigured, match="DJANGO_DEBUG"):
        load_settings(monkeypatch, {"DJANGO_DEBUG": "sometimes", "SETTLE_VAR_DIR": str(tmp_path)})


def test_production_environment_loads(monkeypatch, tmp_path):
    loaded = load_settings(monkeypatch, production_environment(tmp_path))
    assert loaded["DEBUG"] is False
    assert loaded["SESSION_COOKIE_SECURE"] is True
    assert loaded["SESSION_COOKIE_NAME"] == "__Host-sessionid"
    assert loaded["STRIPE_API_BASE"] is None
    assert loaded["CELERY_TASK_ALWAYS_EAGER"] is False


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"DJANGO_SECRET_KEY": None}, "DJANGO_SECRET_KEY must be set"),
        ({"DJANGO_SECRET_KEY": "too-short"}, "at least 50 characters"),
        ({"DATABASE_URL": None}, "DATABASE_URL must be set"),
        ({"DATABASE_URL": "sqlite:///settle.sqlite3"}, "production requires PostgreSQL"),
        ({"REDIS_URL": None}, "REDIS_URL must be set"),
        ({"SETTLE_BASE_DOMAIN": None}, "SETTLE_BASE_DOMAIN must be set"),
        ({"DJANGO_ALLOWED_HOSTS": None}, "DJANGO_ALLOWED_HOSTS must be set"),
        ({"DJANGO_DEBUG": "true"}, "DJANGO_DEBUG must be off"),
        ({"SETTLE_MASTER_KEY": None}, "SETTLE_MASTER_KEY or SETTLE_MASTER_KEY_FILE must be set"),
        ({"SETTLE_AUDIT_SIGNING_KEY": None}, "SETTLE_AUDIT_SIGNING_KEY must be set"),
        ({"SETTLE_AUDIT_EXPORT_KEY": None}, "SETTLE_AUDIT_EXPORT_KEY must be set"),
    ],
    ids=lambda value: value if isinstance(value, str) else next(iter(value)),
)
def test_production_refuses_to_start_without_its_secrets(monkeypatch, tmp_path, change, message):
    env = production_environment(tmp_path)
    for name, value in change.items():
        if value is None:
            env.pop(name)
        else:
            env[name] = value
    with pytest.raises(ImproperlyConfigured, match=message):
        load_settings(monkeypatch, env)


def test_production_process_exits_with_a_clear_message_when_unconfigured(tmp_path):
    result = run_manage(["check"], clean_environment({"SETTLE_ENV": "production"}))
    assert result.returncode != 0
    assert "ImproperlyConfigured: DJANGO_SECRET_KEY must be set in production" in result.stderr


def test_check_deploy_passes_with_production_variables(tmp_path):
    result = run_manage(
        ["check", "--deploy", "--fail-level", "WARNING"], clean_environment(production_environment(tmp_path))
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
