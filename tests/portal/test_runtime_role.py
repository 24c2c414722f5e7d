"""The two database roles, as shipped, on a real PostgreSQL (portal.dbroles).

A throwaway database is created for this module by the shipped
deploy/postgres/initdb script (an ordinary owner role owning the database,
and an ordinary runtime role); `manage.py migrate` runs as the owner and
`manage.py grant_runtime_role` gives the runtime role its grants, exactly as
docker-compose's `migrate` service does. Then, connected as the runtime
role: the application's own writes work (a clinic, a patient, a statement and
its ledger row, an audit event through the append function, a chain that
verifies), and every way to get past the append-only triggers is refused. The
owner can do what the runtime role cannot, which is why production must not
serve as it: the system check, the wsgi and Celery start-up guards and
`manage.py check --deploy` refuse the owner, a superuser and a BYPASSRLS role.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from portal.dbroles import (
    APPEND_ONLY_TRIGGERS,
    RoleError,
    check_runtime_role,
    quote_role,
    refuse_unsafe_runtime_role,
    role_problems,
    table_privileges,
)
from portal.tenancy.context import PLATFORM_SCOPE_SETTING, RLS_SETTING_NAME
from tests.settings_probe import SETTINGS_PREFIXES, production_environment

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
INIT_SCRIPT = ROOT / "deploy" / "postgres" / "initdb" / "10-settle-app-role.sh"
INSUFFICIENT_PRIVILEGE = "42501"  # SQLSTATE for "permission denied", "must be owner" and the triggers' refusal
AUDIT_APPEND_ONLY = (
    "audit_auditevent",
    "audit_auditeventsubject",
    "audit_auditcheckpoint",
    "audit_auditarchivesegment",
)


@dataclass
class Stack:
    database: str
    owner: str
    runtime: str
    bypass: str
    var_dir: Path

    def url(self, role: str) -> str:
        server = settings.DATABASES["default"]
        return f"postgres://{role}@{server['HOST'] or '127.0.0.1'}:{server['PORT'] or 5432}/{self.database}"

    def connect(self, role: str) -> Any:
        server = settings.DATABASES["default"]
        connection = psycopg2.connect(
            dbname=self.database,
            user=role,
            host=server["HOST"] or "127.0.0.1",
            port=server["PORT"] or 5432,
            password=server.get("PASSWORD") if role == server["USER"] else None,
        )
        connection.autocommit = True
        return connection


def _superuser(dbname: str | None = None) -> Any:
    server = settings.DATABASES["default"]
    connection = psycopg2.connect(
        dbname=dbname or "postgres",
        user=server["USER"],
        host=server["HOST"] or "127.0.0.1",
        port=server["PORT"] or 5432,
        password=server.get("PASSWORD") or None,
    )
    connection.autocommit = True
    return connection


def manage(
    stack: Stack, role: str, *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`manage.py ARGS` connected to the throwaway database as `role`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(SETTINGS_PREFIXES)}
    env.update(
        {
            "SETTLE_ENV": "test",
            "DATABASE_URL": stack.url(role),
            "REDIS_URL": "",
            "SETTLE_VAR_DIR": str(stack.var_dir),
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )


def init_database(stack: Stack) -> None:
    """Run the shipped deploy/postgres/initdb script, as the postgres container does on first start."""
    server = settings.DATABASES["default"]
    password_file = stack.var_dir / "owner_password"
    password_file.write_text("owner-password-for-the-throwaway-database\n")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PGHOST": server["HOST"] or "127.0.0.1",
        "PGPORT": str(server["PORT"] or 5432),
        "PGPASSWORD": server.get("PASSWORD") or "",
        "POSTGRES_USER": server["USER"],
        "POSTGRES_DB": "postgres",
        "SETTLE_DB_NAME": stack.database,
        "SETTLE_DB_USER": stack.runtime,
        "SETTLE_DB_OWNER": stack.owner,
        "SETTLE_DB_PASSWORD": "runtime-password-for-the-throwaway-database",
        "SETTLE_DB_OWNER_PASSWORD_FILE": str(password_file),
    }
    done = subprocess.run(["sh", str(INIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    suffix = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
    shipped = Stack(
        database=f"settle_roles_{suffix}",
        owner=f"settle_owner_{suffix}",
        runtime=f"settle_app_{suffix}",
        bypass=f"settle_bypass_{suffix}",
        var_dir=tmp_path_factory.mktemp("roles-var"),
    )
    admin = _superuser()
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {quote_role(shipped.bypass)} LOGIN NOSUPERUSER BYPASSRLS")
    try:
        init_database(shipped)
        with admin.cursor() as cursor:
            cursor.execute(f'GRANT CONNECT ON DATABASE "{shipped.database}" TO {quote_role(shipped.bypass)}')
        for command in (("migrate", "--noinput"), ("grant_runtime_role", "--role", shipped.runtime)):
            done = manage(shipped, shipped.owner, *command)
            assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
        yield shipped
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{shipped.database}" WITH (FORCE)')
            for role in (shipped.runtime, shipped.bypass, shipped.owner):
                cursor.execute(f"DROP ROLE IF EXISTS {quote_role(role)}")
        admin.close()


@pytest.fixture
def runtime(stack: Stack) -> Iterator[Any]:
    """A connection as the runtime role, in the platform scope (so RLS hides no row from the attempts)."""
    connection = stack.connect(stack.runtime)
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, %s, false)", [RLS_SETTING_NAME, PLATFORM_SCOPE_SETTING])
    yield connection
    connection.close()


APP_WRITES = """
import datetime, json
from audit.models import AuditEvent
from audit.recorder import audit_record
from audit.services.integrity import chain_for, chain_verify
from billing.models import LedgerEntry
from billing.services.statements import patient_create, statement_issue
from django.db import connection
from portal.services import tenant_create
from portal.tenancy.context import platform_scope, tenant_scope

with platform_scope():
    tenant = tenant_create(slug="roles", name="Roles Clinic")
with tenant_scope(tenant):
    patient = patient_create(tenant=tenant, account_number="R-1", first_name="Ada", last_name="Byron",
                             date_of_birth=datetime.date(1990, 1, 2))
    statement_issue(tenant=tenant, patient=patient, number="R-1001", statement_date=datetime.date(2026, 1, 1),
                    due_date=datetime.date(2026, 2, 1), amount_due_minor=12345)
    event = audit_record(action="receipt.viewed", tenant=tenant, actor_role="guest", target_type="patient",
                         target_id=str(patient.public_id))
    result = chain_verify(chain=chain_for(tenant))
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        user = cursor.fetchone()[0]
    print(json.dumps({
        "user": user,
        "ledger": LedgerEntry.objects.filter(patient=patient).count(),
        "events": AuditEvent.objects.filter(tenant=tenant).count(),
        "recorded": event.sequence,
        "verified": result.ok,
    }))
"""


def _refused(connection: Any, sql: str) -> str:
    """The SQLSTATE PostgreSQL refuses `sql` with (the test fails if it is accepted)."""
    with connection.cursor() as cursor:
        try:
            cursor.execute(sql)
        except psycopg2.Error as exc:
            return str(exc.pgcode)
    raise AssertionError(f"accepted: {sql}")


@pytest.fixture(scope="module")
def written(stack: Stack) -> dict[str, Any]:
    """The application's writes, run once as the runtime role (they also give the refusals rows to refuse)."""
    done = manage(stack, stack.runtime, "shell", "-c", APP_WRITES)
    assert done.returncode == 0, done.stderr
    outcome: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return outcome


def test_the_applications_writes_work_as_the_runtime_role(stack: Stack, written: dict[str, Any]):
    outcome = written
    assert outcome["user"] == stack.runtime
    assert outcome["ledger"] == 1
    assert outcome["events"] >= 1 and outcome["recorded"] >= 1
    assert outcome["verified"] is True


@pytest.mark.parametrize("table", AUDIT_APPEND_ONLY)
def test_the_runtime_role_cannot_switch_the_audit_triggers_off(runtime: Any, table: str):
    for sql in (
        f"ALTER TABLE {table} DISABLE TRIGGER USER",
        f"ALTER TABLE {table} DISABLE TRIGGER settle_audit_no_change",
        f"DROP TRIGGER settle_audit_no_change ON {table}",
        f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} OWNER TO CURRENT_USER",
    ):
        assert _refused(runtime, sql) == INSUFFICIENT_PRIVILEGE, sql


@pytest.mark.parametrize("table", AUDIT_APPEND_ONLY)
def test_the_runtime_role_cannot_change_or_empty_audit_tables(written: dict[str, Any], runtime: Any, table: str):
    with runtime.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")  # reading is allowed
        if table in ("audit_auditevent", "audit_auditeventsubject"):
            # Rows to refuse: their DELETE is granted (retention) and the trigger refuses it.
            assert cursor.fetchone()[0] >= 1
    for sql in (
        f"UPDATE {table} SET id = id",
        f"DELETE FROM {table}",
        f"TRUNCATE {table}",
        f"TRUNCATE {table} CASCADE",
    ):
        assert _refused(runtime, sql) == INSUFFICIENT_PRIVILEGE, sql


def test_the_runtime_role_cannot_silence_triggers_or_create_objects(
    stack: Stack, written: dict[str, Any], runtime: Any
):
    for sql in (
        "SET session_replication_role = replica",
        f"SET ROLE {quote_role(stack.owner)}",
        f"SET SESSION AUTHORIZATION {quote_role(stack.owner)}",
        "ALTER FUNCTION settle_audit_refuse_change() RENAME TO gone",
        "CREATE OR REPLACE FUNCTION settle_audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$",
        "CREATE TABLE smuggled (id int)",
        "ALTER TABLE billing_ledgerentry DISABLE TRIGGER USER",
        "UPDATE billing_ledgerentry SET memo = memo",
        "DELETE FROM billing_ledgerentry",
    ):
        assert _refused(runtime, sql) == INSUFFICIENT_PRIVILEGE, sql


def test_the_owner_could_do_what_the_runtime_role_cannot(stack: Stack):
    """The control: the refusals above are the roles, not the statements."""
    owner = stack.connect(stack.owner)
    owner.autocommit = False
    try:
        with owner.cursor() as cursor:
            cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
    finally:
        owner.rollback()
        owner.close()


def test_the_grants_are_exactly_the_shipped_ones(stack: Stack, runtime: Any):
    with runtime.cursor() as cursor:
        cursor.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
        )
        tables = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            "SELECT DISTINCT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE t.tgname = ANY(%s)",
            [list(APPEND_ONLY_TRIGGERS)],
        )
        append_only = {row[0] for row in cursor.fetchall()}
        assert set(AUDIT_APPEND_ONLY) | {"billing_ledgerentry"} <= append_only
        for table in tables:
            cursor.execute(
                "SELECT array_agg(p ORDER BY p) FROM unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE',"
                "'REFERENCES','TRIGGER']) p WHERE has_table_privilege(current_user, %s, p)",
                [table],
            )
            held = set(cursor.fetchone()[0] or [])
            assert held == set(table_privileges(table, append_only)), table
        cursor.execute("SELECT has_function_privilege(current_user, 'settle_audit_append'::regproc, 'EXECUTE')")
        assert cursor.fetchone()[0] is True
        cursor.execute("SELECT has_schema_privilege(current_user, 'public', 'CREATE')")
        assert cursor.fetchone()[0] is False
    assert role_problems(runtime.cursor()) == []


def test_a_table_a_later_migration_creates_is_usable_by_the_runtime_role(stack: Stack, runtime: Any):
    owner = stack.connect(stack.owner)
    try:
        with owner.cursor() as cursor:
            cursor.execute(
                "CREATE TABLE later_feature (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, note text)"
            )
        with runtime.cursor() as cursor:
            cursor.execute("INSERT INTO later_feature (note) VALUES ('x') RETURNING id")
            assert cursor.fetchone()[0] == 1
            cursor.execute("UPDATE later_feature SET note = 'y'")
            cursor.execute("DELETE FROM later_feature")
        assert _refused(runtime, "ALTER TABLE later_feature DISABLE TRIGGER USER") == INSUFFICIENT_PRIVILEGE
    finally:
        with owner.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS later_feature")
        owner.close()


# --------------------------------------------------------------------------------------
# Production refuses an unsafe role
# --------------------------------------------------------------------------------------


def test_role_problems_name_the_superuser_the_owner_and_bypassrls(stack: Stack):
    with _superuser(stack.database) as admin, admin.cursor() as cursor:
        assert any("superuser" in problem for problem in role_problems(cursor))
        owner_problems = role_problems(cursor, stack.owner)
        assert len(owner_problems) == 1 and "owns" in owner_problems[0] and "audit_" in owner_problems[0]
        assert any("BYPASSRLS" in problem for problem in role_problems(cursor, stack.bypass))
        assert role_problems(cursor, stack.runtime) == []
        with pytest.raises(RoleError):
            role_problems(cursor, "no_such_role_here")
    admin.close()


def test_a_member_of_the_owner_role_is_refused_too(stack: Stack):
    admin = _superuser(stack.database)
    member = f"{stack.runtime}_m"
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE ROLE {quote_role(member)} NOLOGIN IN ROLE {quote_role(stack.owner)}")
            assert any("owns" in problem for problem in role_problems(cursor, member))
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP ROLE IF EXISTS {quote_role(member)}")
        admin.close()


@pytest.mark.django_db
def test_the_system_check_and_startup_guard_refuse_a_superuser_in_production():
    """The suite itself connects as a superuser: in production that must not start."""
    assert check_runtime_role() == []  # not production: nothing to say
    with override_settings(PRODUCTION=True):
        found = check_runtime_role()
        assert found and {message.id for message in found} == {"settle.E100"}
        assert all(message.is_serious() for message in found)
        assert any("superuser" in message.msg for message in found)
        with pytest.raises(ImproperlyConfigured, match="refusing to start: .*superuser"):
            refuse_unsafe_runtime_role()


def _deploy_check(stack: Stack, role: str, tmp_path: Path, *more: str) -> subprocess.CompletedProcess[str]:
    env = production_environment(tmp_path)
    env.update({"DATABASE_URL": stack.url(role), "REDIS_URL": "redis://127.0.0.1:1/0"})
    return manage(stack, role, "check", "--deploy", *more, extra_env=env)


def test_check_deploy_refuses_the_owner_and_passes_the_runtime_role(stack: Stack, tmp_path: Path):
    as_owner = _deploy_check(stack, stack.owner, tmp_path)
    assert as_owner.returncode != 0
    assert "settle.E100" in as_owner.stderr and "owns" in as_owner.stderr
    as_bypass = _deploy_check(stack, stack.bypass, tmp_path)
    assert as_bypass.returncode != 0 and "BYPASSRLS" in as_bypass.stderr
    as_runtime = _deploy_check(stack, stack.runtime, tmp_path)
    assert as_runtime.returncode == 0, as_runtime.stderr
    assert "settle.E10" not in as_runtime.stderr + as_runtime.stdout


def test_grant_runtime_role_refuses_an_unsafe_role(stack: Stack):
    refused = manage(stack, stack.owner, "grant_runtime_role", "--role", stack.bypass)
    assert refused.returncode != 0 and "BYPASSRLS" in refused.stderr
    assert manage(stack, stack.owner, "grant_runtime_role", "--role", 'x"; DROP TABLE y; --').returncode != 0


def test_the_wsgi_start_refuses_the_owner(stack: Stack, tmp_path: Path):
    env = production_environment(tmp_path)
    env.update({"DATABASE_URL": stack.url(stack.owner), "REDIS_URL": "redis://127.0.0.1:1/0"})
    started = manage(stack, stack.owner, "shell", "-c", "import portal.wsgi", extra_env=env)
    assert started.returncode != 0
    assert "refusing to start" in started.stderr


def test_check_deploy_with_the_database_fails_closed_when_it_cannot_ask(stack: Stack, tmp_path: Path):
    env = production_environment(tmp_path)
    env.update({"DATABASE_URL": "postgres://settle@127.0.0.1:1/settle", "REDIS_URL": "redis://127.0.0.1:1/0"})
    skipped = manage(stack, stack.runtime, "check", "--deploy", extra_env=env)
    assert skipped.returncode == 0, skipped.stderr  # a build machine without the database
    asked = manage(stack, stack.runtime, "check", "--deploy", "--database", "default", extra_env=env)
    assert asked.returncode != 0 and "settle.E101" in asked.stderr
    as_owner = _deploy_check(stack, stack.owner, tmp_path, "--database", "default")
    assert as_owner.returncode != 0 and "settle.E100" in as_owner.stderr


@pytest.mark.django_db
def test_celery_worker_and_beat_refuse_to_start_as_a_superuser_in_production():
    from celery.signals import beat_init, worker_init

    from portal.celery import refuse_unsafe_database_role

    assert refuse_unsafe_database_role in [ref() for _, ref in worker_init.receivers]
    assert refuse_unsafe_database_role in [ref() for _, ref in beat_init.receivers]
    refuse_unsafe_database_role()  # not production: starts
    with override_settings(PRODUCTION=True), pytest.raises(SystemExit, match="refusing to start"):
        refuse_unsafe_database_role()


# --------------------------------------------------------------------------------------
# docker-compose ships the two roles
# --------------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    import yaml

    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_compose_gives_the_owner_password_to_postgres_and_migrate_only():
    services = _compose()["services"]
    holders = {name for name, service in services.items() if "settle_db_owner_password" in service.get("secrets", [])}
    assert holders == {"postgres", "migrate"}
    postgres = services["postgres"]["environment"]
    assert postgres["SETTLE_DB_OWNER_PASSWORD_FILE"] == "/run/secrets/settle_db_owner_password"
    assert postgres["SETTLE_DB_OWNER"] != postgres["SETTLE_DB_USER"]
    for name in ("web", "worker", "beat"):
        # They connect with DATABASE_URL from .env: the runtime role.
        assert "DATABASE_URL" not in (services[name].get("environment") or {}), name
        assert services[name]["env_file"] == ".env"


def test_the_compose_migrate_command_migrates_as_the_owner_then_grants_the_runtime_role(tmp_path: Path):
    migrate = _compose()["services"]["migrate"]
    shell, flags, script = migrate["command"]
    assert (shell, flags) == ("sh", "-ec")
    secret = tmp_path / "owner_password"
    secret.write_text("0123abcd")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    fake = bin_dir / "python"
    fake.write_text(f'#!/bin/sh\necho "$DATABASE_URL $*" >> {log}\n')
    fake.chmod(0o755)
    run = script.replace("$$", "$").replace("/run/secrets/settle_db_owner_password", str(secret))
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "DATABASE_URL": "postgres://settle:runtime@postgres:5432/settle",
        **{k: str(v) for k, v in migrate["environment"].items()},
    }
    done = subprocess.run([shell, flags, run], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == [
        "postgres://settle_owner:0123abcd@postgres:5432/settle manage.py migrate --noinput",
        "postgres://settle_owner:0123abcd@postgres:5432/settle manage.py grant_runtime_role --role settle",
    ]
