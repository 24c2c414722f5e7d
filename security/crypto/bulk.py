"""Lean re-sealing for key rotation: column text in, column text out, no model instances.

Rotation spends its time on two things: the AES-GCM work (a decrypt and an
encrypt per value, about 1 us each) and everything around it. Through the
model machinery a value costs ~25 us (instance, descriptor, Binding, key
cache look-up per value, date parsing and formatting); here it is the
header check, one base64 decode, the decrypt, the encrypt and one base64
encode, with the AES-GCM objects fetched once per batch.

What a re-sealed value is, is decided by security.crypto.cipher alone:

- opening checks the header against the row exactly as cipher.open_ does
  (tenant, purpose, row fingerprint) and authenticates the payload with the
  associated data of the row's own tenant, model, field and row id
  (cipher._associated_data), so a value copied from another row or tenant is
  refused, never re-sealed;
- sealing goes through cipher._seal with a cipher.Binding, the code path
  cipher.seal takes, so the output is what cipher.open_ reads.

The plaintext bytes are re-sealed as they are: a value never goes through
its Python type (a date, JSON) on the way, so rotation cannot change it.

Blind indexes (the "index" purpose) are recomputed from the plaintext of
their source columns, normalised as BlindIndexField.normalized does, with the
index key of the new version.

Reading, locking and writing the rows is security.crypto.rotation's job (and
security.crypto.bulk_sql's); this module only turns one batch of stored rows
into their new column values.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.db import models

from security.crypto import cipher, keyring
from security.crypto.errors import TamperedCiphertextError, WrongTenantError
from security.crypto.fields import BlindIndexField, EncryptedFieldMixin, encrypted_fields
from security.crypto.models import KeyPurpose

_NONCE_BYTES = 12
_TAG_BYTES = 16


@dataclass(frozen=True)
class SourceColumn:
    """A column a blind index is computed from (usually encrypted, possibly plain)."""

    field: Any
    position: int  # its place in a selected row

    @property
    def is_encrypted(self) -> bool:
        return isinstance(self.field, EncryptedFieldMixin)


@dataclass(frozen=True)
class TargetColumn:
    """A column of the rotation's purpose: re-sealed (encrypted) or recomputed (blind index)."""

    field: Any  # EncryptedFieldMixin or BlindIndexField
    position: int  # its place in a selected row
    sources: tuple[SourceColumn, ...] = ()  # blind indexes only

    @property
    def is_index(self) -> bool:
        return isinstance(self.field, BlindIndexField)


@dataclass(frozen=True)
class TablePlan:
    """Which columns of one model a rotation of one purpose reads and rewrites.

    A selected row is (pk, tenant_id, row id, *columns): `columns` names them
    in order, `targets` says which of them the purpose rewrites.
    """

    model: type[models.Model]
    purpose: str
    columns: tuple[str, ...]
    targets: tuple[TargetColumn, ...]

    @property
    def label(self) -> str:
        return self.model._meta.label

    @property
    def table(self) -> str:
        return self.model._meta.db_table

    @property
    def pk_column(self) -> str:
        pk = self.model._meta.pk
        assert pk is not None and pk.column is not None
        return pk.column

    @property
    def row_id_field(self) -> Any:
        return self.model._meta.get_field(_row_id_field_name(self.targets))


def _row_id_field_name(targets: Sequence[TargetColumn]) -> str:
    fields: list[Any] = [target.field for target in targets]
    fields += [source.field for target in targets for source in target.sources]
    names = {field.row_id_field for field in fields if isinstance(field, EncryptedFieldMixin)}
    # Blind-index-only plans still need a row id for their sources; all
    # encrypted fields of one model bind to the same row id in practice.
    if len(names) > 1:
        raise ValueError("the encrypted fields of one model bind to different row ids")
    return names.pop() if names else "public_id"


def table_plan(model: type[models.Model], purpose: str) -> TablePlan:
    """The columns rotating `purpose` on `model` reads, and which of them it rewrites."""
    columns: list[str] = []

    def position_of(field: Any) -> int:
        if field.column not in columns:
            columns.append(field.column)
        return 3 + columns.index(field.column)

    targets = []
    for field in encrypted_fields(model, purpose):
        sources: tuple[SourceColumn, ...] = ()
        if isinstance(field, BlindIndexField):
            source_fields = [model._meta.get_field(name) for name in field.sources]
            sources = tuple(SourceColumn(field=source, position=position_of(source)) for source in source_fields)
        targets.append(TargetColumn(field=field, position=position_of(field), sources=sources))
    return TablePlan(model=model, purpose=purpose, columns=tuple(columns), targets=tuple(targets))


class BatchKeys:
    """The AES-GCM objects (and index key) one batch uses, fetched once per batch.

    A batch lives for well under a second, so holding them for its duration
    keeps within the key cache's time bound; the cache counts one use per
    (purpose, version) per batch instead of one per value.
    """

    def __init__(self, *, tenant_id: int) -> None:
        self.tenant_id = tenant_id
        self._aeads: dict[tuple[str, int], AESGCM] = {}
        self._index_keys: dict[int, bytes] = {}

    def aead(self, purpose: str, version: int) -> AESGCM:
        found = self._aeads.get((purpose, version))
        if found is None:
            found = keyring.decryption_aead(tenant_id=self.tenant_id, purpose=purpose, version=version)
            self._aeads[(purpose, version)] = found
        return found

    def index_key(self, version: int) -> bytes:
        found = self._index_keys.get(version)
        if found is None:
            found = keyring.decryption_key(tenant_id=self.tenant_id, purpose=KeyPurpose.INDEX, version=version)
            self._index_keys[version] = found
        return found


def open_stored(token: str, *, binding: cipher.Binding, purpose: str, keys: BatchKeys) -> bytes:
    """Decrypt a stored value of `binding`: the checks of cipher.open_, with the batch's keys."""
    return _open_parsed(cipher.parse(token), binding=binding, purpose=purpose, keys=keys)


def _open_parsed(header: cipher.Header, *, binding: cipher.Binding, purpose: str, keys: BatchKeys) -> bytes:
    return cipher.open_parsed(
        header, binding=binding, purpose=purpose, aead_for=lambda version: keys.aead(purpose, version)
    )


def reseal_stored(token: str, *, binding: cipher.Binding, purpose: str, version: int, keys: BatchKeys) -> str | None:
    """The stored value re-sealed under `version` for the same row (cipher._seal, as cipher.seal);
    None when it is sealed under `version` already."""
    header = cipher.parse(token)
    if header.version == version:
        return None
    plaintext = _open_parsed(header, binding=binding, purpose=purpose, keys=keys)
    return cipher._seal(plaintext, binding=binding, purpose=purpose, version=version, aead=keys.aead(purpose, version))


class RowResealer:
    """Turns stored rows of one plan into their new column values (see reseal_rows)."""

    def __init__(self, plan: TablePlan, *, tenant_id: int, version: int) -> None:
        self.plan = plan
        self.tenant_id = tenant_id
        self.version = version
        self.keys = BatchKeys(tenant_id=tenant_id)
        self.tenant_text = str(tenant_id)
        self.row_id_field = plan.row_id_field

    def binding(self, field: Any, row_id: str) -> cipher.Binding:
        return cipher.Binding(
            tenant_id=self.tenant_id, model_label=self.plan.label, field_name=field.name, row_id=row_id
        )

    def row_id(self, stored: Any) -> str:
        # As the field machinery names it: str() of the field's Python value
        # (a UUID, which SQLite stores as 32 hex digits).
        value = self.row_id_field.to_python(stored)
        if value is None or value == "":
            raise ValueError(f"{self.plan.label}: a row has no {self.row_id_field.name}")
        return str(value)

    def new_value(self, target: TargetColumn, row: Sequence[Any], row_id: str) -> str | None:
        """The target's new value, None when it names `version` already."""
        stored = row[target.position]
        if target.is_index:
            if cipher.index_version(stored) == self.version:
                return None
            return self.index_value(target, row, row_id)
        return self.resealed(target.field, stored, row_id)

    def resealed(self, field: Any, stored: str, row_id: str) -> str | None:
        """reseal_stored for the usual value (a canonical header naming this row), with less work per value.

        The checks are reseal_stored's (format, tenant, purpose, row
        fingerprint, payload length, AES-GCM authentication with this row's
        associated data); a value that fails any of them before decryption
        goes to reseal_stored, which raises the precise error. The output is
        cipher._seal's format: key prefix, fingerprint, url-safe base64 of
        nonce || ciphertext || tag (tests compare it with cipher.open_).
        """
        label, purpose = self.plan.label, self.plan.purpose
        fingerprint = cipher._fingerprint(label, field.name, row_id)
        parts = stored.split(":")
        data = None
        if (
            len(parts) == 6
            and parts[0] == cipher.FORMAT
            and parts[1] == self.tenant_text
            and parts[2] == purpose
            and parts[4] == fingerprint
            and parts[3].isdigit()
            and parts[3] == str(int(parts[3]))
        ):
            if int(parts[3]) == self.version:
                return None
            data = cipher._payload_bytes(parts[5])
        if data is None or len(data) < _NONCE_BYTES + _TAG_BYTES:
            binding = self.binding(field, row_id)
            return reseal_stored(stored, binding=binding, purpose=purpose, version=self.version, keys=self.keys)
        version = int(parts[3])
        try:
            plaintext = self.keys.aead(purpose, version).decrypt(
                data[:_NONCE_BYTES],
                data[_NONCE_BYTES:],
                cipher._associated_data(self.tenant_id, purpose, version, label, field.name, row_id),
            )
        except InvalidTag:
            raise TamperedCiphertextError(f"{label}.{field.name}: ciphertext failed authentication (altered)") from None
        nonce = cipher._nonces.take()
        sealed = self.keys.aead(purpose, self.version).encrypt(
            nonce, plaintext, cipher._associated_data(self.tenant_id, purpose, self.version, label, field.name, row_id)
        )
        payload = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()
        return f"{cipher._key_prefix(self.tenant_id, purpose, self.version)}{fingerprint}:{payload}"

    def index_value(self, target: TargetColumn, row: Sequence[Any], row_id: str) -> str:
        values = []
        for source in target.sources:
            stored = row[source.position]
            if stored is None or not source.is_encrypted:
                values.append(None if stored is None else source.field.to_python(stored))
                continue
            binding = self.binding(source.field, row_id)
            plaintext = open_stored(stored, binding=binding, purpose=source.field.purpose, keys=self.keys)
            values.append(source.field.from_plaintext_bytes(plaintext))
        normalized = target.field.normalized(values)
        if not normalized:
            return ""
        digest = cipher._index_digest(
            self.keys.index_key(self.version), index_name=target.field.index_name, normalized=normalized
        )
        return f"b{self.version}:{digest}"

    def changes(self, row: Sequence[Any]) -> dict[int, str]:
        """{position: new value} for the row's targets that name another version."""
        found: dict[int, str] = {}
        row_id = self.row_id(row[2])
        for target in self.plan.targets:
            if row[target.position] is None or row[target.position] == "":
                continue
            value = self.new_value(target, row, row_id)
            if value is not None:
                found[target.position] = value
        return found


@dataclass(frozen=True)
class ResealedBatch:
    """New values of the changed rows: `records` are (pk, *values of `columns`)."""

    columns: tuple[str, ...]
    records: list[tuple[Any, ...]]


def reseal_rows(plan: TablePlan, rows: Sequence[Sequence[Any]], *, tenant_id: int, version: int) -> ResealedBatch:
    """Re-seal the values of `rows` (as selected for `plan`) that name another version than `version`.

    Every row must belong to `tenant_id` (the caller selected them by it);
    a row of another tenant raises rather than being re-sealed. A value that
    fails to open raises a DecryptionError subclass: nothing of the batch is
    written then.
    """
    resealer = RowResealer(plan, tenant_id=tenant_id, version=version)
    changed: list[tuple[Any, dict[int, str], Sequence[Any]]] = []
    touched: set[int] = set()
    for row in rows:
        if int(row[1]) != tenant_id:
            raise WrongTenantError(f"{plan.label}: a row of another tenant reached the rotation")
        changes = resealer.changes(row)
        if changes:
            changed.append((row[0], changes, row))
            touched.update(changes)
    positions = sorted(touched)
    columns = tuple(plan.columns[position - 3] for position in positions)
    records = [(pk, *(changes.get(position, row[position]) for position in positions)) for pk, changes, row in changed]
    return ResealedBatch(columns=columns, records=records)
