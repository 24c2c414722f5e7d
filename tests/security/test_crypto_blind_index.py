"""Blind indexes: exact look-ups over encrypted values, normalised, keyed per tenant."""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

import pytest

from portal.models import Tenant
from portal.tenancy.context import tenant_scope
from security.crypto.fields import blind_index_filter, blind_index_values
from security.crypto.normalize import (
    normalize_date,
    normalize_email,
    normalize_phone,
    normalize_statement_number,
    normalize_text,
)
from tests.security import crypto_support
from tests.security.crypto_support import Vault

# Fixtures shared by the crypto tests (requested by name: local_keys, two_tenants, vault_table).
local_keys_fixture = crypto_support.local_keys_fixture
two_tenants_fixture = crypto_support.two_tenants_fixture
vault_table_fixture = crypto_support.vault_table_fixture

DOB = datetime.date(1958, 3, 14)
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("  Jamal   TESTWOOD ", "jamal testwood"),
        ("Ｊａｍａｌ", "jamal"),  # full-width letters (NFKC)
        ("STRASSE", "strasse"),
        ("Straße", "strasse"),  # case folding
        (None, ""),
    ],
)
def test_normalize_text(typed: str | None, expected: str) -> None:
    assert normalize_text(typed) == expected


@pytest.mark.parametrize(
    "typed", ["+1 (202) 555-0143", "202.555.0143", "(202) 555 0143", "12025550143", "001 202 555 0143", "2025550143"]
)
def test_normalize_phone_formats_agree(typed: str) -> None:
    assert normalize_phone(typed) == "12025550143"


def test_normalize_phone_keeps_international_and_extensions_distinct() -> None:
    assert normalize_phone("+44 20 7946 0958") == "442079460958"
    assert normalize_phone("202-555-0143 ext. 12") == "12025550143x12"
    assert normalize_phone("") == ""


@pytest.mark.parametrize(
    "typed", ["1958-03-14", "3/14/1958", "03/14/1958", "03-14-1958", "19580314", "14 Mar 1958", "March 14, 1958", DOB]
)
def test_normalize_date_formats_agree(typed: object) -> None:
    assert normalize_date(typed) == "1958-03-14"


def test_normalize_date_refuses_nonsense_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="not a recognised date") as excinfo:
        normalize_date("the fourteenth")
    assert "fourteenth" not in str(excinfo.value)


def test_normalize_email_and_statement_number() -> None:
    assert normalize_email("  Rosa.Exampleton@Example.COM ") == "rosa.exampleton@example.com"
    # Spaces, dashes, slashes and dots go.
    assert normalize_statement_number("dc-100 234") == normalize_statement_number("DC100234") == "DC100234"


def test_the_statement_number_normaliser_needs_nothing_above_security() -> None:
    """security.crypto sits below billing: its normaliser must not import billing (or anything above it)."""
    probe = (
        "import sys\n"
        "from security.crypto.normalize import normalize_statement_number as n\n"
        "assert n(' st-1004 2/a.b_c ') == 'ST10042ABC', n(' st-1004 2/a.b_c ')\n"
        "above = sorted(m for m in sys.modules if m.split('.')[0] in ('billing', 'messaging', 'audit', 'portal'))\n"
        "assert not above, above\n"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter, a fixed script
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.usefixtures("local_keys", "vault_table")
def test_lookup_by_normalised_name_and_date(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    with tenant_scope(alpha):
        row = Vault(tenant=alpha, name="Jamal Testwood", born=DOB)
        row.save()
        Vault(tenant=alpha, name="Jamal Testwood", born=datetime.date(1960, 1, 1)).save()
        assert row.name_index.startswith("b1:") and "Jamal" not in row.name_index
        found = Vault.objects.filter(
            blind_index_filter(
                tenant_id=alpha.pk, model=Vault, field_name="name_born_index", values=[" jamal  testwood", "3/14/1958"]
            )
        )
        assert [v.pk for v in found] == [row.pk]
        assert (
            Vault.objects.filter(
                blind_index_filter(tenant_id=alpha.pk, model=Vault, field_name="name_index", values=["JAMAL TESTWOOD"])
            ).count()
            == 2
        )


@pytest.mark.usefixtures("local_keys", "vault_table")
def test_blind_index_is_keyed_per_tenant(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, beta = two_tenants
    with tenant_scope(alpha):
        a = Vault(tenant=alpha, name="Same Name", born=DOB)
        a.save()
    with tenant_scope(beta):
        b = Vault(tenant=beta, name="Same Name", born=DOB)
        b.save()
        # The same value indexes differently at another clinic, so equal
        # values cannot be correlated across tenants.
        assert a.name_index != b.name_index
        assert not Vault.objects.filter(name_index=a.name_index).exists()


@pytest.mark.usefixtures("local_keys", "vault_table")
def test_blank_values_match_nothing(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    with tenant_scope(alpha):
        Vault(tenant=alpha, name="", born=None).save()
        assert blind_index_values(tenant_id=alpha.pk, model=Vault, field_name="name_index", values=["  "]) == []
        assert not Vault.objects.filter(
            blind_index_filter(tenant_id=alpha.pk, model=Vault, field_name="name_index", values=[""])
        ).exists()


@pytest.mark.usefixtures("local_keys", "vault_table")
def test_index_is_recomputed_when_the_value_changes(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    with tenant_scope(alpha):
        row = Vault(tenant=alpha, name="Old Name", born=DOB)
        row.save()
        row.name = "New Name"
        row.save()
        match = blind_index_filter(tenant_id=alpha.pk, model=Vault, field_name="name_index", values=["new name"])
        assert Vault.objects.filter(match).get().pk == row.pk
        old = blind_index_filter(tenant_id=alpha.pk, model=Vault, field_name="name_index", values=["old name"])
        assert not Vault.objects.filter(old).exists()
