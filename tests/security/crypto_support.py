"""Shared helpers for the security.crypto tests (not a test module itself).

Test modules import the fixtures by their function names
(`local_keys_fixture`, ...) and request them by fixture name (`local_keys`).

`Vault` is a model that exists only in these tests: a tenant-owned row with
one field of each encrypted kind and two blind indexes. Its app label is not
installed, so makemigrations and the system checks never see it; the fixture
`vault_table` creates its table for the test and, for that test only, lists it
in security.crypto.fields.ENCRYPTED_MODELS so rotation walks it like a real model.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Iterator

import pytest
from django.db import connection, models
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader

from portal.models import Tenant
from portal.services import tenant_create
from portal.tenancy.models import TenantOwnedModel
from security.crypto import keyring
from security.crypto.fields import (
    ENCRYPTED_MODELS,
    BlindIndexField,
    EncryptedDateField,
    EncryptedJSONField,
    EncryptedTextField,
)
from security.crypto.models import KeyPurpose
from security.crypto.providers import LocalKeyProvider, reset_providers, set_provider


class Vault(TenantOwnedModel):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = EncryptedTextField(max_length=100)
    born = EncryptedDateField(null=True, blank=True)
    extra = EncryptedJSONField(null=True, blank=True)
    api_secret = EncryptedTextField(blank=True, purpose=KeyPurpose.SECRET)
    plain_note = models.CharField(max_length=40, blank=True)
    name_index = BlindIndexField(sources=("name",), normalizers=("text",))
    name_born_index = BlindIndexField(sources=("name", "born"), normalizers=("text", "date"))

    class Meta:
        app_label = "crypto_tests"
        db_table = "crypto_tests_vault"


# Rotation walks security.crypto.fields.ENCRYPTED_MODELS; the Vault takes part
# only while its table exists (the vault_table fixture), never in other tests.
ENCRYPTED_MODELS.pop(Vault._meta.label, None)


def create_vault_table() -> None:
    # table_sql without entering the editor: SQLite refuses an editor inside
    # the test transaction. Indexes are left out; these tests do not need them.
    editor = connection.schema_editor()
    editor.deferred_sql = []  # normally set on entering; FKs and indexes land here and are dropped
    sql, params = editor.table_sql(Vault)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@pytest.fixture(name="vault_table")
def vault_table_fixture(db: None) -> Iterator[type[Vault]]:
    # Created inside the test's transaction: rolled back with it.
    create_vault_table()
    ENCRYPTED_MODELS[Vault._meta.label] = Vault
    try:
        yield Vault
    finally:
        ENCRYPTED_MODELS.pop(Vault._meta.label, None)


def new_master_key() -> bytes:
    return secrets.token_bytes(32)


def master_key_text(key: bytes) -> str:
    return base64.b64encode(key).decode()


@pytest.fixture(name="local_keys")
def local_keys_fixture() -> Iterator[LocalKeyProvider]:
    """A fresh local provider with a random master key, and empty key caches."""
    provider = LocalKeyProvider(master_keys=[new_master_key()])
    set_provider("local", provider)
    keyring.forget_all()
    yield provider
    keyring.forget_all()
    reset_providers()


@pytest.fixture(name="two_tenants")
def two_tenants_fixture(db: None) -> tuple[Tenant, Tenant]:
    return (
        tenant_create(slug="crypt-a", name="Crypt A Clinic"),
        tenant_create(slug="crypt-b", name="Crypt B Clinic"),
    )


def latest_migration(app_label: str) -> tuple[str, str]:
    """The app's newest migration: the schema its models describe, which later tests expect."""
    (leaf,) = MigrationLoader(None, ignore_no_migrations=True).graph.leaf_nodes(app_label)
    return leaf


def migrate_to(target: tuple[str, str]) -> None:
    """Migrate the test database to `target` (app label, migration name), forwards or backwards."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])
