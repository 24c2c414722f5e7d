"""Sealed list projections: a copy of several encrypted fields, sealed as one value.

A list page that shows five encrypted columns per row opens five ciphertexts
per row; a projection of those columns opens one. It is computed from its
source fields on every save (never written directly), bound to its row like
every other encrypted field, and rotated with the other fields of its purpose.
Its cost: a second ciphertext of the same PHI under the same key, rewritten
on every save (docs/decisions/0005-phi-envelope-encryption.md).
"""

from __future__ import annotations

import datetime
import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from django.apps import apps as global_apps
from django.core import checks
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models import signals
from django.utils.functional import cached_property

from security.crypto.errors import EncryptedFieldUsageError
from security.crypto.fields import (
    BlindIndexField,
    EncryptedDateField,
    EncryptedDescriptor,
    EncryptedFieldMixin,
    EncryptedTextField,
    Sealed,
    SealedPrefix,
)


class ProjectedValues(Mapping[str, Any]):
    """The decrypted values of a projection: read-only, typed as their source fields type them.

    Read them as attributes (`patient.listing.first_name`) or keys (templates
    look keys up first). The repr names no value: it may be PHI.
    """

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, Any]) -> None:
        object.__setattr__(self, "_values", values)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a projection is read-only: change its source fields and save the row")

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"<projection of {', '.join(self._values)}>"

    __str__ = __repr__


_json_decoder = json.JSONDecoder()


def _identity(text: str) -> Any:
    return text


class ProjectionDescriptor(EncryptedDescriptor):
    """EncryptedDescriptor, plus: a row with nothing stored is projected from its sources."""

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        if instance is not None:
            # Read once opened (a template reads it once per column): no call further down.
            value = instance.__dict__.get(self.attname)
            if value.__class__ is ProjectedValues:
                return value
        value = super().__get__(instance, cls)
        if instance is not None and value is None:
            value = self.field.project(instance)  # type: ignore[attr-defined]
        return value


class EncryptedProjectionField(EncryptedFieldMixin, models.TextField):  # type: ignore[type-arg]
    """A sealed copy of several encrypted fields of the row, opened with ONE decryption.

        listing = EncryptedProjectionField(sources=("first_name", "last_name", "date_of_birth"))

    A list page showing 5 encrypted fields of 500 rows opens 2,500 values; read
    through a projection it opens 500. The stored plaintext is a JSON object:
    each source's name and its plaintext exactly as the source field seals it
    (dates in ISO form), or null. Computed from the sources in pre_save on
    every save, so it cannot drift from them: saves are the only write path
    (QuerySet.update/bulk_update of encrypted fields raise; the model's save()
    adds the projection to update_fields that name a source, with
    with_derived_fields, and a save that still leaves it out raises). Bound to
    tenant, model, field and row like every encrypted field, and re-sealed by
    key rotation with them (same purpose).

    Reading it returns a ProjectedValues, decrypted once per instance. It holds
    what was last saved: assign a source and read the projection before
    saving, and it still shows the saved value. A row with no projection
    stored (NULL: inserted without the ORM) is projected from its sources.
    """

    descriptor_class = ProjectionDescriptor
    _pyi_private_set_type: Any
    _pyi_private_get_type: ProjectedValues  # type: ignore[assignment]

    def __init__(self, *args: Any, sources: Sequence[str] = (), **kwargs: Any) -> None:
        if not sources or len(set(sources)) != len(sources):
            raise ValueError("EncryptedProjectionField needs distinct source field names")
        self.sources = tuple(sources)
        kwargs.setdefault("editable", False)
        kwargs.setdefault("null", True)
        kwargs.setdefault("blank", True)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs["sources"] = list(self.sources)
        for key, default in (("editable", False), ("null", True), ("blank", True)):
            if kwargs.get(key, default) == default:
                kwargs.pop(key, None)
        return name, path, args, kwargs

    def contribute_to_class(self, cls: type[models.Model], name: str, *args: Any, **kwargs: Any) -> None:
        super().contribute_to_class(cls, name, *args, **kwargs)
        if not cls._meta.abstract and cls._meta.apps is global_apps:
            signals.pre_save.connect(self._check_update_fields, sender=cls, weak=False)

    def _check_update_fields(self, sender: Any, update_fields: Any = None, **kwargs: Any) -> None:
        # A partial save that rewrites a source but not the projection would let them drift.
        # Models add it themselves in save() (with_derived_fields); this catches one that does not.
        if update_fields and self.name not in update_fields and set(self.sources) & set(update_fields):
            raise EncryptedFieldUsageError(
                f"{sender._meta.label}: save(update_fields=...) names a source of {self.name}; add {self.name!r}"
            )

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        errors = super().check(**kwargs)
        for source in self.sources:
            try:
                field: Any = self.model._meta.get_field(source)
            except FieldDoesNotExist:
                errors.append(checks.Error(f"projection source {source!r} is not a field", obj=self))
                continue
            if not isinstance(field, EncryptedFieldMixin) or isinstance(field, EncryptedProjectionField):
                errors.append(checks.Error(f"projection source {source!r} is not an encrypted field", obj=self))
        return errors

    @cached_property
    def _source_fields(self) -> tuple[EncryptedFieldMixin, ...]:
        return tuple(self.model._meta.get_field(source) for source in self.sources)  # type: ignore[misc]

    @cached_property
    def _decoders(self) -> tuple[tuple[str, Any], ...]:
        # Text needs no conversion back (the common case, so no call per value).
        found: list[tuple[str, Any]] = []
        for field in self._source_fields:
            if isinstance(field, EncryptedTextField):
                found.append((field.name, _identity))
            elif isinstance(field, EncryptedDateField):
                found.append((field.name, datetime.date.fromisoformat))
            else:
                found.append((field.name, functools.partial(_from_text, field)))
        return tuple(found)

    # -- plaintext <-> bytes --

    def projection_texts(self, instance: models.Model) -> dict[str, str | None]:
        """Each source's plaintext as that field seals it (text), or None."""
        texts: dict[str, str | None] = {}
        for field in self._source_fields:
            value = getattr(instance, field.attname)
            texts[field.name] = None if value is None else field.to_plaintext_bytes(value).decode()
        return texts

    def to_plaintext_bytes(self, value: Any) -> bytes:
        return projection_plaintext(value)

    def from_plaintext_bytes(self, data: bytes) -> ProjectedValues:
        # The decoder itself: json.loads would first sniff the bytes' encoding (always UTF-8 here).
        texts = _json_decoder.decode(data.decode())
        try:
            values = {name: None if (text := texts[name]) is None else decode(text) for name, decode in self._decoders}
        except KeyError:
            raise EncryptedFieldUsageError(
                f"{self.model._meta.label}.{self.name} was sealed with other sources: re-save the row"
            ) from None
        return ProjectedValues(values)

    def to_python(self, value: Any) -> Any:
        return value

    # -- Django hooks --

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        texts = self.projection_texts(model_instance)
        token = self.seal(model_instance, texts)
        # What a read returns from now on: the values just saved, without opening the token again.
        model_instance.__dict__[self.attname] = self.from_plaintext_bytes(projection_plaintext(texts))
        return token

    def project(self, instance: models.Model) -> ProjectedValues:
        """The projection of the instance's current source values (no decryption of the projection)."""
        return self.from_plaintext_bytes(projection_plaintext(self.projection_texts(instance)))

    def value_to_string(self, obj: models.Model) -> str:
        # Serialisation (dumpdata) writes the ciphertext, never plaintext.
        raw = obj.__dict__.get(self.attname)
        if isinstance(raw, Sealed):
            return raw.token
        return str(self.seal(obj, self.projection_texts(obj)))


EncryptedProjectionField.register_lookup(SealedPrefix)


def _from_text(field: EncryptedFieldMixin, text: str) -> Any:
    return field.from_plaintext_bytes(text.encode())


def with_derived_fields(model: type[models.Model], update_fields: Any) -> Any:
    """`update_fields` plus every blind index and projection of `model` with a source among them.

    For a model's save(): a partial save of a source (save(update_fields=["phone"]))
    then rewrites what is computed from it too, so neither a look-up index nor
    a list projection goes stale. None (a full save) stays None.
    """
    if update_fields is None:
        return None
    names = set(update_fields)
    for field in model._meta.concrete_fields:
        if isinstance(field, EncryptedProjectionField | BlindIndexField) and names.intersection(field.sources):
            names.add(field.name)
    return names


def projection_plaintext(texts: Mapping[str, str | None]) -> bytes:
    """The bytes an EncryptedProjectionField seals for `texts` (source name -> plaintext text or None).

    Migrations that fill a projection from decrypted sources call this, so
    they write exactly what the field writes.
    """
    return json.dumps(dict(texts), ensure_ascii=False, separators=(",", ":")).encode()
