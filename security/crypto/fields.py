"""Encrypted model fields and blind-index fields.

    class Patient(TenantOwnedModel):
        public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
        last_name = EncryptedTextField()
        date_of_birth = EncryptedDateField()
        name_dob_index = BlindIndexField(sources=("last_name", "date_of_birth"), normalizers=("text", "date"))

How they behave:

- The column holds the ciphertext (security.crypto.cipher). A value read from
  the database stays sealed (a `Sealed` object) until the attribute is first
  read, then is decrypted with the row's own tenant, model, field and public id
  as associated data, and the plaintext replaces it on the instance. Rows that
  are loaded but never read cost no decryption.
- Saving seals the current plaintext with the tenant's active data key, so
  every save also moves the row to the newest key.
- Filtering on an encrypted field raises EncryptedFieldUsageError: look rows
  up through a BlindIndexField. QuerySet.update() and bulk_update() of an
  encrypted field raise too: they have no row to bind the ciphertext to.
- The model must have `tenant_id` and a stable row id (`public_id` by default;
  `row_id_field=` names another), set before the first save.
"""

from __future__ import annotations

import datetime
import functools
import json
import uuid
from collections.abc import Sequence
from typing import Any

from django.apps import apps as global_apps
from django.core import checks
from django.core.validators import MaxLengthValidator
from django.db import models
from django.db.models import Value
from django.db.models.expressions import Combinable
from django.db.models.lookups import StartsWith
from django.db.models.query_utils import DeferredAttribute
from django.utils.functional import cached_property

from security.crypto import cipher
from security.crypto.errors import EncryptedFieldUsageError
from security.crypto.models import KeyPurpose
from security.crypto.normalize import normalizer

# Every concrete model (in the global app registry) with encrypted or blind-index
# fields, by label. Rotation walks these.
ENCRYPTED_MODELS: dict[str, type[models.Model]] = {}


class Sealed:
    """A ciphertext as read from the database, not yet decrypted."""

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return "<sealed>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sealed) and other.token == self.token

    def __hash__(self) -> int:
        return hash(self.token)


class _Token(str):
    """A ciphertext this process sealed for one row (what pre_save returns)."""

    __slots__ = ()


class EncryptedDescriptor(DeferredAttribute):
    """Decrypts a sealed value on first read and keeps the plaintext on the instance.

    A data descriptor (it defines __set__), so reads always come through here
    even though the value lives in the instance __dict__.
    """

    def __init__(self, field: Any) -> None:
        super().__init__(field)
        self.attname = field.attname

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        if instance is None:
            return self
        # The loaded value straight from the instance (what DeferredAttribute
        # does, minus its call): this runs once per field per row of a list.
        state = instance.__dict__
        try:
            value = state[self.attname]
        except KeyError:  # deferred: DeferredAttribute loads it
            value = super().__get__(instance, cls)
        if value.__class__ is Sealed:
            value = self.field.unseal(instance, value.token)  # type: ignore[attr-defined]
            state[self.attname] = value
        return value

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__dict__[self.attname] = value


class SealedPrefix(StartsWith):
    """`field__sealed_prefix=cipher.key_prefix(...)`: rows sealed with one key version."""

    lookup_name = "sealed_prefix"
    prepare_rhs = False

    def get_rhs_op(self, connection: Any, rhs: Any) -> Any:
        # The backends know this lookup as "startswith".
        if self.rhs_is_direct_value():
            return connection.operators["startswith"] % rhs
        return connection.pattern_ops["startswith"].format(rhs)


_ALLOWED_LOOKUPS = {"isnull", "sealed_prefix"}


def _register(cls: type[models.Model]) -> None:
    if cls._meta.abstract or cls._meta.apps is not global_apps:
        return  # abstract bases and migration-state models
    ENCRYPTED_MODELS[cls._meta.label] = cls


@functools.lru_cache(maxsize=65_536)
def _binding(tenant_id: int, model: type[models.Model], field_name: str, row_id: Any) -> cipher.Binding:
    # Bindings are immutable and name only identifiers: cached, because a list
    # page or a save builds the same rows' bindings for every field read.
    return cipher.Binding(tenant_id=tenant_id, model_label=model._meta.label, field_name=field_name, row_id=str(row_id))


# Place of each (tenant, model, field, row) read lately: identifiers only,
# like _binding; one per field of a row, so a 500-row list of 5 fields keeps
# 2,500. A plain dict, emptied when full: a look-up with a UUID in the key
# (lru_cache) costs as much as a decryption, because UUID hashes and compares
# in Python; here the key holds the UUID's integer.
_PLACES_MAX = 32_768
_places: dict[tuple[Any, ...], cipher.Place] = {}


def _place(tenant_id: int, model: type[models.Model], field_name: str, row_id: Any, purpose: str) -> cipher.Place:
    # The row id's class is part of the key: UUID(int=5) and 5 bind differently.
    row_class = row_id.__class__
    key = (tenant_id, model, field_name, row_class, row_id.int if row_class is uuid.UUID else row_id)
    found = _places.get(key)
    if found is None:
        if len(_places) >= _PLACES_MAX:
            _places.clear()
        found = _places[key] = cipher.Place(_binding(tenant_id, model, field_name, row_id), purpose)
    return found


class EncryptedFieldMixin:
    """What every encrypted field shares. The column is text; plaintext is converted by
    `to_plaintext_bytes` / `from_plaintext_bytes` in each subclass."""

    descriptor_class = EncryptedDescriptor
    empty_strings_allowed = True

    purpose: str
    row_id_field: str
    name: str
    attname: str
    null: bool
    model: type[models.Model]

    def __init__(
        self, *args: Any, purpose: str = KeyPurpose.PHI, row_id_field: str = "public_id", **kwargs: Any
    ) -> None:
        if purpose not in (KeyPurpose.PHI, KeyPurpose.SECRET):
            raise ValueError("encrypted fields use the phi or secret purpose")
        self.purpose = str(purpose)
        self.row_id_field = row_id_field
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()  # type: ignore[misc]
        if self.purpose != KeyPurpose.PHI:
            kwargs["purpose"] = self.purpose
        if self.row_id_field != "public_id":
            kwargs["row_id_field"] = self.row_id_field
        return name, path, args, kwargs

    def contribute_to_class(self, cls: type[models.Model], name: str, *args: Any, **kwargs: Any) -> None:
        super().contribute_to_class(cls, name, *args, **kwargs)  # type: ignore[misc]
        _register(cls)

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        errors: list[checks.CheckMessage] = list(super().check(**kwargs))  # type: ignore[misc]
        if getattr(self, "unique", False) or getattr(self, "db_index", False):
            errors.append(checks.Error("encrypted fields cannot be unique or indexed; add a BlindIndexField", obj=self))
        return errors

    def db_type(self, connection: Any) -> str:
        return models.TextField().db_type(connection) or "text"

    def get_internal_type(self) -> str:
        return "TextField"

    # -- plaintext <-> bytes (subclasses) --

    def to_plaintext_bytes(self, value: Any) -> bytes:
        raise NotImplementedError

    def from_plaintext_bytes(self, data: bytes) -> Any:
        raise NotImplementedError

    # -- binding, sealing --

    def _row(self, instance: models.Model) -> tuple[int, Any]:
        """(tenant id, row id) of the instance; EncryptedFieldUsageError when either is missing."""
        state = instance.__dict__
        tenant_id = state.get("tenant_id")
        row_id = state.get(self.row_id_field)
        if tenant_id is None or row_id is None or (isinstance(row_id, str) and not row_id):
            # Not loaded as plain attributes (deferred, a property) or really missing.
            tenant_id = getattr(instance, "tenant_id", None)
            row_id = getattr(instance, self.row_id_field, None)
            if tenant_id is None:
                raise EncryptedFieldUsageError(f"{instance._meta.label}.{self.name}: the row has no tenant")
            if row_id is None or row_id == "":
                raise EncryptedFieldUsageError(
                    f"{instance._meta.label}.{self.name}: the row has no {self.row_id_field}"
                )
        return int(tenant_id), row_id

    def binding_for(self, instance: models.Model) -> cipher.Binding:
        return self.place_for(instance).binding

    def place_for(self, instance: models.Model) -> cipher.Place:
        # _row's common case inline (one call less per value read): both ids
        # loaded as plain attributes, the tenant id an int. A UUID is always
        # true; "" and None are not.
        state = instance.__dict__
        tenant_id = state.get("tenant_id")
        row_id = state.get(self.row_id_field)
        if tenant_id.__class__ is not int or not row_id:
            tenant_id, row_id = self._row(instance)
        return _place(tenant_id, type(instance), self.name, row_id, self.purpose)

    def seal(self, instance: models.Model, value: Any) -> _Token | None:
        if value is None:
            return None
        return _Token(cipher.seal_at(self.to_plaintext_bytes(value), self.place_for(instance)))

    def unseal(self, instance: models.Model, token: str) -> Any:
        return self.from_plaintext_bytes(cipher.open_at(token, self.place_for(instance)))

    def stored_version(self, raw: Any) -> int | None:
        """The key version a stored value names (None for NULL)."""
        if raw is None:
            return None
        token = raw.token if isinstance(raw, Sealed) else str(raw)
        return cipher.parse(token).version

    # -- Django hooks --

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return None if value is None else Sealed(value)

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        # getattr decrypts a sealed value first (re-sealing it under the active key).
        return self.seal(model_instance, getattr(model_instance, self.attname))

    def get_db_prep_save(self, value: Any, connection: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, _Token):
            return str(value)
        raise EncryptedFieldUsageError(
            f"{self.model._meta.label}.{self.name} is encrypted: write it with save() on the instance, "
            "not QuerySet.update() or bulk_update()"
        )

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name not in _ALLOWED_LOOKUPS:
            raise EncryptedFieldUsageError(
                f"{self.model._meta.label}.{self.name} is encrypted and cannot be filtered with "
                f"__{lookup_name}; use its blind index"
            )
        return super().get_lookup(lookup_name)  # type: ignore[misc]

    def get_transform(self, lookup_name: str) -> Any:
        raise EncryptedFieldUsageError(f"{self.model._meta.label}.{self.name} is encrypted; no transforms")

    def value_to_string(self, obj: models.Model) -> str:
        # Serialisation (dumpdata) writes the ciphertext, never plaintext.
        raw = obj.__dict__.get(self.attname)
        if isinstance(raw, Sealed):
            return raw.token
        sealed = self.seal(obj, raw)
        return "" if sealed is None else str(sealed)


class EncryptedTextField(EncryptedFieldMixin, models.TextField):  # type: ignore[misc,type-arg]
    """Text, encrypted. `max_length` limits the plaintext (validation and forms only)."""

    @cached_property
    def validators(self) -> list[Any]:
        found = list(super().validators)
        if self.max_length is not None:
            found.append(MaxLengthValidator(self.max_length))
        return found

    def to_plaintext_bytes(self, value: Any) -> bytes:
        return str(value).encode()

    def from_plaintext_bytes(self, data: bytes) -> str:
        return data.decode()

    def to_python(self, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        return str(value)


EncryptedTextField.register_lookup(SealedPrefix)


class EncryptedDateField(EncryptedFieldMixin, models.TextField):  # type: ignore[misc,type-arg]
    """A date, encrypted (stored as its ISO form)."""

    # For django-stubs: the attribute is a date, as with DateField.
    _pyi_private_set_type: datetime.date | str | Combinable  # type: ignore[assignment]
    _pyi_private_get_type: datetime.date  # type: ignore[assignment]

    def to_plaintext_bytes(self, value: Any) -> bytes:
        parsed: datetime.date = self.to_python(value)
        return parsed.isoformat().encode()

    def from_plaintext_bytes(self, data: bytes) -> datetime.date:
        return datetime.date.fromisoformat(data.decode())

    def to_python(self, value: Any) -> Any:
        return models.DateField().to_python(value)

    def formfield(self, **kwargs: Any) -> Any:
        from django import forms

        return super().formfield(**{"form_class": forms.DateField, "widget": forms.DateInput, **kwargs})


EncryptedDateField.register_lookup(SealedPrefix)


class EncryptedJSONField(EncryptedFieldMixin, models.TextField):  # type: ignore[misc,type-arg]
    """Any JSON value, encrypted."""

    _pyi_private_set_type: Any
    _pyi_private_get_type: Any

    def to_plaintext_bytes(self, value: Any) -> bytes:
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()

    def from_plaintext_bytes(self, data: bytes) -> Any:
        return json.loads(data)

    def to_python(self, value: Any) -> Any:
        return value


EncryptedJSONField.register_lookup(SealedPrefix)


class BlindIndexField(models.CharField):  # type: ignore[type-arg]
    """A keyed, per-tenant blind index of one or more encrypted fields, for exact look-ups.

    Computed on save from the plaintext of `sources`, each normalised by the
    matching entry of `normalizers` (security.crypto.normalize). Empty when
    every source is empty. Query it with `blind_index_filter` (or
    `blind_index_values`), which computes the value under every live index key.
    """

    def __init__(
        self,
        *args: Any,
        sources: Sequence[str] = (),
        normalizers: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        if not sources or len(sources) != len(normalizers):
            raise ValueError("BlindIndexField needs sources and one normaliser per source")
        for name in normalizers:
            normalizer(name)  # raises on an unknown name
        self.sources = tuple(sources)
        self.normalizers = tuple(normalizers)
        self.purpose = KeyPurpose.INDEX
        kwargs.setdefault("max_length", 40)
        kwargs.setdefault("editable", False)
        kwargs.setdefault("blank", True)
        kwargs.setdefault("db_index", True)
        kwargs.setdefault("default", "")
        # Rows inserted without the ORM (SQL, fixtures) get an empty index, not an error.
        kwargs.setdefault("db_default", "")
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs["sources"] = list(self.sources)
        kwargs["normalizers"] = list(self.normalizers)
        defaults = (("max_length", 40), ("editable", False), ("blank", True), ("db_index", True), ("default", ""))
        for key, default in defaults:
            if kwargs.get(key, default) == default:
                kwargs.pop(key, None)
        if kwargs.get("db_default") == Value(""):
            kwargs.pop("db_default")
        return name, path, args, kwargs

    def contribute_to_class(self, cls: type[models.Model], name: str, *args: Any, **kwargs: Any) -> None:
        super().contribute_to_class(cls, name, *args, **kwargs)
        _register(cls)

    @property
    def index_name(self) -> str:
        return f"{self.model._meta.label}.{self.name}"

    def normalized(self, values: Sequence[Any]) -> str:
        """The joined, normalised sources; "" when all are empty."""
        parts = [normalizer(name)(value) for name, value in zip(self.normalizers, values, strict=True)]
        if not any(parts):
            return ""
        return "\x1f".join(parts)

    def compute(self, instance: models.Model) -> str:
        normalized = self.normalized([getattr(instance, source) for source in self.sources])
        if not normalized:
            return ""
        tenant_id = int(instance.tenant_id)  # type: ignore[attr-defined]
        return cipher.blind_index(tenant_id=tenant_id, index_name=self.index_name, normalized=normalized)

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        value = self.compute(model_instance)
        setattr(model_instance, self.attname, value)
        return value

    def stored_version(self, raw: Any) -> int | None:
        return cipher.index_version(raw or "")


def blind_index_values(
    *, tenant_id: int, model: type[models.Model], field_name: str, values: Sequence[Any]
) -> list[str]:
    """What `model.field_name` would hold for `values` (one per source), under every live index key.

    Empty list when the values normalise to nothing (so a blank look-up matches no row).
    """
    field = model._meta.get_field(field_name)
    if not isinstance(field, BlindIndexField):
        raise EncryptedFieldUsageError(f"{model._meta.label}.{field_name} is not a blind index")
    normalized = field.normalized(list(values))
    if not normalized:
        return []
    return cipher.blind_index_candidates(tenant_id=tenant_id, index_name=field.index_name, normalized=normalized)


def blind_index_values_many(
    *, tenant_id: int, model: type[models.Model], field_name: str, values: Sequence[Sequence[Any]]
) -> list[list[str]]:
    """blind_index_values of many rows of source values, the key versions read once (batch look-ups)."""
    field = model._meta.get_field(field_name)
    if not isinstance(field, BlindIndexField):
        raise EncryptedFieldUsageError(f"{model._meta.label}.{field_name} is not a blind index")
    normalized = [field.normalized(list(row)) for row in values]
    present = [value for value in normalized if value]
    found = iter(
        cipher.blind_index_candidates_many(tenant_id=tenant_id, index_name=field.index_name, normalized=present)
        if present
        else []
    )
    return [next(found) if value else [] for value in normalized]


def blind_index_filter(
    *, tenant_id: int, model: type[models.Model], field_name: str, values: Sequence[Any]
) -> models.Q:
    """A Q matching rows of `model` whose blind index equals `values` (empty values match nothing)."""
    candidates = blind_index_values(tenant_id=tenant_id, model=model, field_name=field_name, values=values)
    return models.Q(**{f"{field_name}__in": candidates, "tenant_id": tenant_id})


def encrypted_fields(model: type[models.Model], purpose: str | None = None) -> list[Any]:
    """The encrypted and blind-index fields of `model`, optionally of one purpose."""
    found = []
    for field in model._meta.concrete_fields:
        if isinstance(field, EncryptedFieldMixin | BlindIndexField) and (purpose is None or field.purpose == purpose):
            found.append(field)
    return found
