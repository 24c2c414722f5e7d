"""Field encrypt+decrypt throughput: Settle's encrypted field against plaintext and the real packages.

    .venv/bin/python bench/crypto_fields.py [--values 20000] [--orm-values 2000]

Contenders, each a model field on its own table of the same shape (tenant,
public id, one text column), same values, same database, same process:

- plaintext: models.TextField;
- Settle: EncryptedTextField (AES-256-GCM under the tenant's data key,
  associated data binding tenant/model/field/row, key cache);
- django-fernet-encrypted-fields: encrypted_fields.fields.EncryptedTextField
  (Fernet: AES-128-CBC + HMAC-SHA256, one key derived from SECRET_KEY);
- django-cryptography: encrypt(models.TextField()) (its own Fernet variant
  over pickled values). Release 1.1, the newest, does not import on Django
  5.x (django.utils.baseconv was removed in 5.0); when it fails, the
  django-cryptography-5 fork is used instead and the line says so.

The packages are benchmark-only, installed outside the project:

    .venv/bin/pip install --target /tmp/crypto-bench-deps --no-deps \\
        django-fernet-encrypted-fields django-cryptography django-appconf
    .venv/bin/pip install --target /tmp/crypto-bench-deps-dc5 --no-deps django-cryptography-5 django-appconf

A contender whose package is missing is skipped with the reason.

Two measurements, run in turn round after round (crypto_support.interleaved):

1. Through the ORM (the target): one op = `save(update_fields=...)` of a new
   value, `objects.get(pk=...)` of the row, and the first read of the
   attribute. Every run is one transaction, so commits do not swamp it.
2. Field code only, no database: one op = pre_save + get_db_prep_save (what
   save writes) + from_db_value (what a load does) + the first attribute
   read, on an instance in memory. This is the per-value price of each
   field without the query, where the packages differ most.

A bare `cryptography` Fernet encrypt+decrypt is printed last, labelled as
the core both packages build on (the stand-in used before they could be
installed). Data keys are warm (a running process).
Target: Settle at least as fast as the faster of the two packages.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import uuid
from collections.abc import Callable
from typing import Any

from crypto_support import Timing, interleaved, setup, teardown

# Read only (imported from, never written): where the commands above put the packages.
DEPS = "/tmp/crypto-bench-deps"  # noqa: S108
DJANGO5_FORK_DEPS = "/tmp/crypto-bench-deps-dc5"  # noqa: S108
VALUES = ["Theodore Exampleton-Smith", "Ann Lee", "Maria-José Fernández García", "O'Brien"]


def import_packages() -> tuple[dict[str, Any], list[str]]:
    """The packages' field classes by contender name, and notes on what is missing or replaced."""
    fields: dict[str, Any] = {}
    notes: list[str] = []
    sys.path.append(DEPS)  # after the venv: the venv's Django and cryptography win
    try:
        fields["django-fernet-encrypted-fields"] = importlib.import_module("encrypted_fields.fields").EncryptedTextField
    except ImportError as error:
        notes.append(f"django-fernet-encrypted-fields skipped: {error}")
    try:
        fields["django-cryptography 1.1"] = importlib.import_module("django_cryptography.fields").encrypt
    except ImportError as error:
        notes.append(f"django-cryptography (release 1.1) does not import: {error}")
        for name in [module for module in sys.modules if module.startswith("django_cryptography")]:
            del sys.modules[name]  # the half-imported release
        sys.path.insert(sys.path.index(DEPS), DJANGO5_FORK_DEPS)
        try:
            fields["django-cryptography-5 (fork)"] = importlib.import_module("django_cryptography.fields").encrypt
            notes.append("  so the django-cryptography-5 fork (2.0.3, Django 5 support) stands in for it")
        except ImportError as fork_error:
            notes.append(f"  and the django-cryptography-5 fork is not usable either: {fork_error}")
    return fields, notes


def bench_models(package_fields: dict[str, Any]) -> dict[str, Any]:
    """One model per contender, same shape, created in the benchmark database."""
    from django.db import models

    from portal.tenancy.models import TenantOwnedModel
    from security.crypto.fields import EncryptedTextField

    def value_field(name: str) -> Any:
        if name == "plaintext":
            return models.TextField()
        if name == "Settle":
            return EncryptedTextField()
        if name.startswith("django-cryptography"):
            return package_fields[name](models.TextField())
        return package_fields[name]()

    made = {}
    for number, name in enumerate(["plaintext", "Settle", *package_fields]):
        attrs = {
            "__module__": __name__,
            "public_id": models.UUIDField(default=uuid.uuid4, unique=True),
            "value": value_field(name),
            "Meta": type("Meta", (), {"app_label": "bench", "db_table": f"bench_field_{number}"}),
        }
        made[name] = type(f"BenchField{number}", (TenantOwnedModel,), attrs)
    return made


def orm_op(model: Any, n: int, tenant: Any) -> Callable[[], None]:
    """n x (save a new value, load the row, read the value), in one transaction."""
    from django.db import transaction

    row = model.objects.create(tenant=tenant, value=VALUES[0])

    def run() -> None:
        with transaction.atomic():
            for index in range(n):
                value = VALUES[index % len(VALUES)]
                row.value = value
                row.save(update_fields=["value"])
                assert model.objects.get(pk=row.pk).value == value

    return run


def field_op(model: Any, n: int, connection: Any, tenant: Any) -> Callable[[], None]:
    """n x (pre_save + get_db_prep_save, from_db_value, first read) of one field, in memory."""
    field = model._meta.get_field("value")
    row = model.objects.create(tenant=tenant, value=VALUES[0])
    # A plain TextField has no from_db_value: a load stores the column as is.
    from_db_value = getattr(field, "from_db_value", lambda value, expression, connection: value)

    def run() -> None:
        for index in range(n):
            value = VALUES[index % len(VALUES)]
            row.value = value
            stored = field.get_db_prep_save(field.pre_save(row, False), connection)
            row.__dict__["value"] = from_db_value(stored, None, connection)
            assert row.value == value

    return run


def fernet_core(n: int) -> Callable[[], None]:
    from cryptography.fernet import Fernet

    fernet = Fernet(Fernet.generate_key())
    encoded = [value.encode() for value in VALUES]

    def run() -> None:
        for index in range(n):
            data = encoded[index % len(encoded)]
            assert fernet.decrypt(fernet.encrypt(data)) == data

    return run


def report(title: str, n: int, timings: dict[str, Timing]) -> None:
    print(title)
    for name, timing in timings.items():
        print(
            f"  {name:34s} {n / timing.wall:>10,.0f} ops/s  {timing.wall / n * 1e6:7.2f} us/op wall"
            f"  {timing.cpu / n * 1e6:7.2f} us/op CPU"
        )
    packages = [timing for name, timing in timings.items() if name.startswith("django-")]
    if packages:
        faster = min(timing.wall for timing in packages)
        faster_cpu = min(timing.cpu for timing in packages)
        settle = timings["Settle"]
        print(
            f"  ratio Settle/faster package throughput: {faster / settle.wall:.2f} wall, "
            f"{faster_cpu / settle.cpu:.2f} CPU (target >= 1.0)"
        )
    print(f"  Settle vs plaintext: {timings['Settle'].wall / timings['plaintext'].wall:.1f}x the time")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--values", type=int, default=20_000, help="ops per run, field code only")
    parser.add_argument("--orm-values", type=int, default=2_000, help="ops per run, through the ORM")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--statistic", choices=("median", "min"), default="median")
    args = parser.parse_args()
    connection = setup("fields")
    old_name = connection.settings_dict["NAME"]
    try:
        from django.conf import settings

        from portal.services import tenant_create
        from portal.tenancy.context import tenant_scope

        settings.SALT_KEY = "settle-bench-salt"  # django-fernet-encrypted-fields derives its key from it
        package_fields, notes = import_packages()
        models_by_name = bench_models(package_fields)
        with connection.schema_editor() as editor:
            for model in models_by_name.values():
                editor.create_model(model)

        tenant = tenant_create(slug="bench", name="Bench Clinic")
        with tenant_scope(tenant):
            orm_runs = {name: orm_op(model, args.orm_values, tenant) for name, model in models_by_name.items()}
            field_runs = {
                name: field_op(model, args.values, connection, tenant) for name, model in models_by_name.items()
            }
            field_runs["Fernet core (bare, no field)"] = fernet_core(args.values)
            for run in (*orm_runs.values(), *field_runs.values()):
                run()  # warm up: keys derived and cached, code paths hot
            orm = interleaved(args.repeats, orm_runs, statistic=args.statistic)
            field_only = interleaved(args.repeats, field_runs, statistic=args.statistic)

        print(f"database: {connection.vendor}; {args.statistic} of {args.repeats} interleaved runs")
        for note in notes:
            print(note)
        report(f"through the ORM (save + get + first read), {args.orm_values} values per run:", args.orm_values, orm)
        report(f"field code only (no database), {args.values} values per run:", args.values, field_only)
    finally:
        teardown(connection, old_name)


if __name__ == "__main__":
    main()
