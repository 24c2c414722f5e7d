"""The lean open and seal path (cipher.open_at / seal_at, fields._place) decides exactly as open_ and seal do."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from portal.models import Tenant
from portal.tenancy.context import tenant_scope
from security.crypto import cipher, fields
from security.crypto.errors import DecryptionError
from security.crypto.models import KeyPurpose
from tests.security import crypto_support
from tests.security.crypto_support import Vault

# Fixtures shared by the crypto tests (requested by name: local_keys, two_tenants, vault_table).
local_keys_fixture = crypto_support.local_keys_fixture
two_tenants_fixture = crypto_support.two_tenants_fixture
vault_table_fixture = crypto_support.vault_table_fixture

pytestmark = pytest.mark.usefixtures("local_keys", "vault_table")

PHI = str(KeyPurpose.PHI)


def _binding(tenant: Tenant, row_id: str, field_name: str = "name") -> cipher.Binding:
    return cipher.Binding(tenant_id=tenant.pk, model_label="crypto_tests.Vault", field_name=field_name, row_id=row_id)


def _outcome(opener: Callable[..., bytes], *args: object, **kwargs: object) -> object:
    """The plaintext, or the exception type: what a caller can observe."""
    try:
        return opener(*args, **kwargs)
    except DecryptionError as error:
        return type(error)


def _flip_last_payload_char(token: str) -> str:
    return token[:-1] + ("A" if token[-1] != "A" else "B")


def _mutations(token: str, *, tenant: Tenant, other_tenant: Tenant, other_row_token: str) -> dict[str, str]:
    header, payload = token.rsplit(":", 1)
    _, tenant_text, purpose, version, fingerprint = header.split(":")
    return {
        "as sealed": token,
        "version written 01": f"s1:{tenant_text}:{purpose}:01:{fingerprint}:{payload}",
        "unknown version": f"s1:{tenant_text}:{purpose}:7:{fingerprint}:{payload}",
        "tenant written 0n": f"s1:0{tenant_text}:{purpose}:{version}:{fingerprint}:{payload}",
        "other tenant named": f"s1:{other_tenant.pk}:{purpose}:{version}:{fingerprint}:{payload}",
        "secret purpose named": f"s1:{tenant_text}:secret:{version}:{fingerprint}:{payload}",
        "another row's value": other_row_token,
        "payload altered": _flip_last_payload_char(token),
        "payload not base64": f"{header}:{payload[:-2]}*!",
        "payload not ascii": f"{header}:{payload[:-1]}é",
        "payload truncated": f"{header}:{payload[:20]}",
        "payload empty": f"{header}:",
        "extra colon": f"{header}::{payload}",
        "format s2": token.replace("s1:", "s2:", 1),
        "plaintext": "Rosa Exampleton",
        "empty": "",
        "tenant of the wrong kind": f"s1:{tenant.pk}x:{purpose}:{version}:{fingerprint}:{payload}",
    }


def test_open_at_decides_every_variation_as_open_does(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, beta = two_tenants
    row_id, other_row_id = str(uuid.uuid4()), str(uuid.uuid4())
    with tenant_scope(alpha):
        binding = _binding(alpha, row_id)
        token = cipher.seal(b"Rosa Exampleton", binding=binding, purpose=PHI)
        other_row_token = cipher.seal(b"Someone Else", binding=_binding(alpha, other_row_id), purpose=PHI)
        variations = _mutations(token, tenant=alpha, other_tenant=beta, other_row_token=other_row_token)
        for name, variation in variations.items():
            expected = _outcome(cipher.open_, variation, binding=binding, purpose=PHI)
            # A fresh place (nothing learnt), then the same place again (header known).
            place = cipher.Place(binding, PHI)
            first = _outcome(cipher.open_at, variation, place)
            again = _outcome(cipher.open_at, variation, place)
            assert first == again == expected, name
    # The variations really cover both sides: the value opens, and most are refused.
    assert expected != b"Rosa Exampleton"
    assert _outcome(cipher.open_at, token, cipher.Place(binding, PHI)) == b"Rosa Exampleton"


def test_a_header_learnt_for_one_place_does_not_open_another(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    with tenant_scope(alpha):
        first, second = _binding(alpha, str(uuid.uuid4())), _binding(alpha, str(uuid.uuid4()))
        token = cipher.seal(b"Rosa", binding=first, purpose=PHI)
        assert cipher.open_at(token, cipher.Place(first, PHI)) == b"Rosa"
        other_place = cipher.Place(second, PHI)
        with pytest.raises(DecryptionError):
            cipher.open_at(token, other_place)
        assert other_place.headers == {}


def test_only_canonical_headers_are_kept(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    with tenant_scope(alpha):
        binding = _binding(alpha, str(uuid.uuid4()))
        token = cipher.seal(b"Rosa", binding=binding, purpose=PHI)
        place = cipher.Place(binding, PHI)
        padded = token.replace(f":{PHI}:1:", f":{PHI}:0001:", 1)
        assert cipher.open_at(padded, place) == b"Rosa"  # read, as open_ reads it
        assert place.headers == {}
        assert cipher.open_at(token, place) == b"Rosa"
        assert list(place.headers) == [token[: token.rfind(":") + 1]]


def test_seal_at_and_seal_write_the_same_format_and_open_either_way(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    with tenant_scope(alpha):
        binding = _binding(alpha, str(uuid.uuid4()))
        place = cipher.Place(binding, PHI)
        lean = cipher.seal_at(b"Rosa", place)
        classic = cipher.seal(b"Rosa", binding=binding, purpose=PHI)
        prefix = cipher.key_prefix(tenant_id=alpha.pk, purpose=PHI, version=1) + binding.fingerprint() + ":"
        assert lean.startswith(prefix) and classic.startswith(prefix)
        assert lean != classic  # fresh nonces
        assert cipher.open_(lean, binding=binding, purpose=PHI) == b"Rosa"
        assert cipher.open_at(classic, place) == b"Rosa"


def test_field_reads_go_through_the_place_of_their_row(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    with tenant_scope(alpha):
        row = Vault(tenant=alpha, name="Rosa Exampleton", api_secret="sk_x")
        row.save()
        loaded = Vault.objects.get(pk=row.pk)
        assert loaded.name == "Rosa Exampleton"
        place = Vault._meta.get_field("name").place_for(loaded)  # type: ignore[attr-defined]
    assert place.binding == cipher.Binding(
        tenant_id=alpha.pk, model_label="crypto_tests.Vault", field_name="name", row_id=str(row.public_id)
    )
    assert place.purpose == PHI
    secret_place = Vault._meta.get_field("api_secret").place_for(loaded)  # type: ignore[attr-defined]
    assert secret_place.purpose == KeyPurpose.SECRET and secret_place is not place


def test_places_are_keyed_by_the_row_id_and_its_type(two_tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = two_tenants
    as_uuid = fields._place(alpha.pk, Vault, "name", uuid.UUID(int=5), PHI)
    as_int = fields._place(alpha.pk, Vault, "name", 5, PHI)
    assert as_uuid.binding.row_id == str(uuid.UUID(int=5))
    assert as_int.binding.row_id == "5"
    assert fields._place(alpha.pk, Vault, "name", uuid.UUID(int=5), PHI) is as_uuid


def test_the_place_memo_is_bounded(two_tenants: tuple[Tenant, Tenant], monkeypatch: pytest.MonkeyPatch) -> None:
    alpha, _ = two_tenants
    monkeypatch.setattr(fields, "_PLACES_MAX", 3)
    monkeypatch.setattr(fields, "_places", {})
    for _ in range(10):
        fields._place(alpha.pk, Vault, "name", uuid.uuid4(), PHI)
        assert len(fields._places) <= 3
