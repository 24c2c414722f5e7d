"""The one way to write an audit event.

Call it inside the same transaction as the act it records, so the event and
the act commit or roll back together. The event is appended to its chain
(the tenant's, or the platform's for tenant None) under a lock on the chain's
head row, which is held until that transaction ends: concurrent writers to
one chain queue behind each other, so the chain never forks and a rolled-back
act leaves no gap. Record the event late in the transaction (after any slow
work) to keep that lock short.

Two ways to write, one result. On PostgreSQL an append is two statements:
lock and read the head, then one data-modifying CTE that inserts the event
and its subject index rows and moves the head. Elsewhere
(SQLite, the embedded default) the ORM writes the same rows. Both build the
event, and so its canonical record and hash, with the same function
(`_next_row`); tests/audit/test_recorder_paths.py proves the rows match.
The SQL is written out here rather than left to the ORM because the ORM
needs four statements for this and builds a queryset for each (see "Append
rate" in docs/performance.md).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import uuid
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from django.db import connections, models, router, transaction
from django.db.backends.utils import CursorWrapper
from django.http import HttpRequest
from django.utils import timezone

from audit.actions import ACTIONS, REFERENCE_LISTS
from audit.chain import GENESIS, PLATFORM_CHAIN, RECORD_FIELDS, event_hash, format_time
from audit.models import AuditChain, AuditEvent, AuditEventSubject, Outcome
from portal.logging import request_id_var
from portal.models import Tenant
from portal.net import client_ip
from portal.tenancy.context import Scope, active_scope, platform_scope, tenant_scope

# Detail values must be short scalars: ids, codes, counts, amounts. Anything
# else is refused so that PHI cannot slip into the trail through free text.
_ALLOWED_DETAIL_TYPES = (str, int, bool, type(None))
_MAX_DETAIL_STRING = 64
_MAX_DETAIL_LIST = 500
_MAX_DETAIL_KEYS = 32

# Database vendors that take the two-statement append. Anything else takes
# the ORM path; a test empties this set to compare the two on PostgreSQL.
FAST_PATH_VENDORS = frozenset({"postgresql"})


_M = TypeVar("_M", bound=models.Model)


class AuditDetailError(ValueError):
    pass


# References and codes: ids, slugs, action names, ISO times, base64. No
# whitespace (free text has it) and no "@" (email addresses).
_DETAIL_STRING = re.compile(r"[A-Za-z0-9_.:/+=,#-]*")


def _check_string(key: str, value: str) -> None:
    if len(value) > _MAX_DETAIL_STRING:
        raise AuditDetailError(f"audit detail {key!r} is too long to be a reference or code")
    if not _DETAIL_STRING.fullmatch(value):
        raise AuditDetailError(f"audit detail {key!r} must be a reference or code (no spaces, no email addresses)")


def _validated_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    if details and len(details) > _MAX_DETAIL_KEYS:
        raise AuditDetailError("too many audit details")
    for key, value in (details or {}).items():
        if not isinstance(key, str) or not key or len(key) > _MAX_DETAIL_STRING:
            raise AuditDetailError("audit detail keys must be short strings")
        if isinstance(value, list | tuple):
            # Lists of references (public ids of the records a page showed).
            if len(value) > _MAX_DETAIL_LIST or not all(isinstance(item, str) for item in value):
                raise AuditDetailError(f"audit detail {key!r} must be a list of short references")
            for item in value:
                _check_string(key, item)
            clean[key] = list(value)
            continue
        if isinstance(value, bool) or value is None:
            clean[key] = value
            continue
        if not isinstance(value, _ALLOWED_DETAIL_TYPES):
            raise AuditDetailError(f"audit detail {key!r} must be a short scalar")
        if isinstance(value, str):
            _check_string(key, value)
        clean[key] = value
    return clean


def chain_key_for(tenant: Tenant | None) -> str:
    return str(tenant.public_id) if tenant is not None else PLATFORM_CHAIN


def _normalised_ip(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _subjects(target_type: str, target_id: str, details: Mapping[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if target_type and target_id:
        found.append((target_type, target_id))
    for key, subject_type in REFERENCE_LISTS.items():
        value = details.get(key)
        if isinstance(value, list):
            found.extend((subject_type, item) for item in value)
    return list(dict.fromkeys(found))


# An event's columns (attribute names) that its canonical record is made of:
# every record field but the chain key, which the head row holds.
_RECORD_ATTNAMES = tuple(field for field in RECORD_FIELDS if field != "chain")


def _canonical_record(row: Mapping[str, Any], chain_key: str) -> dict[str, Any]:
    """The canonical record (audit.chain.RECORD_FIELDS) of an event's column values."""
    actor = row["actor_user_id"]
    return {
        "chain": chain_key,
        "sequence": row["sequence"],
        "public_id": str(row["public_id"]),
        "occurred_at": format_time(row["occurred_at"]),
        "actor_user_id": str(actor) if actor else None,
        "actor_role": row["actor_role"],
        "action": row["action"],
        "target_type": row["target_type"],
        "target_id": row["target_id"],
        "outcome": row["outcome"],
        "source_ip": _normalised_ip(row["source_ip"]),
        "request_id": row["request_id"],
        "details": row["details"],
        "prev_hash": row["prev_hash"],
        "hash": row["hash"],
    }


def event_record(event: AuditEvent, chain_key: str) -> dict[str, Any]:
    """The canonical record (audit.chain.RECORD_FIELDS) of a saved or unsaved event."""
    return _canonical_record({name: getattr(event, name) for name in _RECORD_ATTNAMES}, chain_key)


@dataclass(frozen=True, slots=True)
class _Draft:
    """An event's validated values, before it has a place in a chain."""

    tenant: Tenant | None
    chain_key: str
    actor_user_id: Any
    actor_role: str
    action: str
    target_type: str
    target_id: str
    outcome: str
    source_ip: str | None
    request_id: str
    details: dict[str, Any]
    subjects: list[tuple[str, str]]

    @property
    def tenant_id(self) -> int | None:
        return self.tenant.pk if self.tenant is not None else None


def _draft(
    *,
    action: str,
    tenant: Tenant | None,
    outcome: str,
    actor: Any | None,
    actor_role: str,
    target_type: str,
    target_id: str,
    request: HttpRequest | None,
    details: Mapping[str, Any] | None,
    source_ip: str | None,
) -> _Draft:
    """Validate the caller's values; raises before anything touches the database."""
    if action not in ACTIONS:
        raise ValueError(f"unregistered audit action {action!r}")
    if outcome not in Outcome.values:
        raise ValueError(f"unknown audit outcome {outcome!r}")
    clean = _validated_details(details)
    target = str(target_id)
    if len(target) > 64 or len(target_type) > 64:
        raise AuditDetailError("audit targets are a type and a public id")
    request_id = request_id_var.get()
    return _Draft(
        tenant=tenant,
        chain_key=chain_key_for(tenant),
        actor_user_id=getattr(actor, "public_id", None),
        actor_role=actor_role,
        action=action,
        target_type=target_type,
        target_id=target,
        outcome=outcome,
        source_ip=_normalised_ip(client_ip(request) if request is not None else source_ip),
        request_id=request_id[:64] if request_id != "-" else "",
        details=clean,
        subjects=_subjects(target_type, target, clean),
    )


class _Head(NamedTuple):
    """A chain's head row as read under its lock."""

    id: int
    sequence: int
    hash: str


def _next_row(draft: _Draft, head: _Head) -> dict[str, Any]:
    """The column values (attribute names) of the event that follows `head`, hash included.

    Both write paths store exactly these values, so they store the same
    record and hash. Reads the clock: call it under the head lock, so that
    time order follows sequence order.
    """
    row = {
        "public_id": uuid.uuid4(),
        "chain_id": head.id,
        "sequence": head.sequence + 1,
        "tenant_id": draft.tenant_id,
        "occurred_at": timezone.now(),
        "actor_user_id": draft.actor_user_id,
        "actor_role": draft.actor_role,
        "action": draft.action,
        "target_type": draft.target_type,
        "target_id": draft.target_id,
        "outcome": draft.outcome,
        "source_ip": draft.source_ip,
        "request_id": draft.request_id,
        "details": draft.details,
        "prev_hash": head.hash,
        "hash": "",
    }
    row["hash"] = event_hash(_canonical_record(row, draft.chain_key))
    return row


def _locked_chain(tenant: Tenant | None) -> AuditChain:
    """The chain's head row, locked until the surrounding transaction ends (ORM path)."""
    key = chain_key_for(tenant)
    chain = AuditChain.objects.select_for_update().filter(key=key).first()
    if chain is not None:
        return chain
    # First event of this chain. Two first writers may race: the loser's
    # insert is ignored and both then lock the one row.
    AuditChain.objects.bulk_create(
        [AuditChain(key=key, tenant=tenant, last_sequence=0, last_hash=GENESIS)], ignore_conflicts=True
    )
    return AuditChain.objects.select_for_update().get(key=key)


def _append_portable(draft: _Draft) -> AuditEvent:
    """Append through the ORM: any database (the embedded SQLite default)."""
    chain = _locked_chain(draft.tenant)
    event = AuditEvent(**_next_row(draft, _Head(chain.pk, chain.last_sequence, chain.last_hash)))
    event.chain, event.tenant = chain, draft.tenant
    event.save(force_insert=True)
    moved = {"last_sequence": event.sequence, "last_hash": event.hash, "updated_at": event.occurred_at}
    AuditChain.objects.filter(pk=chain.pk).update(**moved)
    for name, value in moved.items():
        setattr(chain, name, value)
    if draft.subjects:
        AuditEventSubject.objects.bulk_create(
            [
                AuditEventSubject(event=event, tenant=draft.tenant, subject_type=kind, subject_id=ref)
                for kind, ref in draft.subjects
            ]
        )
    return event


# The head row, locked for the rest of the transaction (as select_for_update()).
_LOCK_HEAD_SQL = "SELECT id, last_sequence, last_hash FROM audit_auditchain WHERE key = %s FOR UPDATE"

# First event of a chain: as bulk_create(ignore_conflicts=True) does.
_CREATE_HEAD_SQL = (
    "INSERT INTO audit_auditchain (key, tenant_id, last_sequence, last_hash, updated_at) "
    "VALUES (%s, %s, 0, %s, %s) ON CONFLICT DO NOTHING"
)

# One statement writes the event, its subject index rows (in the order
# bulk_create would insert them) and the new head. PostgreSQL runs every
# data-modifying CTE once whether or not the final SELECT reads it. The head
# update needs no guard: this transaction holds the head's row lock, and the
# (chain, sequence) unique constraint refuses a fork regardless.
_APPEND_SQL = """
WITH new_event AS (
    INSERT INTO audit_auditevent (
        public_id, chain_id, sequence, tenant_id, occurred_at, actor_user_id, actor_role, action,
        target_type, target_id, outcome, source_ip, request_id, details, prev_hash, hash
    ) VALUES (%s::uuid, %s, %s, %s, %s, %s::uuid, %s, %s, %s, %s, %s, %s::inet, %s, %s::jsonb, %s, %s)
    RETURNING id
), moved_head AS (
    UPDATE audit_auditchain SET last_sequence = %s, last_hash = %s, updated_at = %s WHERE id = %s
), indexed_subjects AS (
    INSERT INTO audit_auditeventsubject (event_id, tenant_id, subject_type, subject_id)
    SELECT new_event.id, %s, subject.kind, subject.ref
    FROM new_event, unnest(%s::text[], %s::text[]) WITH ORDINALITY AS subject(kind, ref, position)
    ORDER BY subject.position
)
SELECT id FROM new_event
"""


def _locked_head(cursor: CursorWrapper, draft: _Draft) -> _Head:
    """The chain's head row, locked until the surrounding transaction ends (PostgreSQL path)."""
    cursor.execute(_LOCK_HEAD_SQL, [draft.chain_key])
    row = cursor.fetchone()
    if row is None:
        # Two first writers may race: the loser's insert waits for the
        # winner's transaction, is then ignored, and both lock the one row.
        cursor.execute(_CREATE_HEAD_SQL, [draft.chain_key, draft.tenant_id, GENESIS, timezone.now()])
        cursor.execute(_LOCK_HEAD_SQL, [draft.chain_key])
        row = cursor.fetchone()
    return _Head(*row)


def _append_params(row: Mapping[str, Any], draft: _Draft) -> list[Any]:
    """Parameters of _APPEND_SQL: the event's row, the new head, the subjects."""
    actor = row["actor_user_id"]
    event = [str(row["public_id"]), row["chain_id"], row["sequence"], row["tenant_id"], row["occurred_at"]]
    event += [str(actor) if actor else None, row["actor_role"], row["action"], row["target_type"], row["target_id"]]
    event += [row["outcome"], row["source_ip"], row["request_id"], json.dumps(row["details"])]
    event += [row["prev_hash"], row["hash"]]
    head = [row["sequence"], row["hash"], row["occurred_at"], row["chain_id"]]
    subjects = [row["tenant_id"], [kind for kind, _ in draft.subjects], [ref for _, ref in draft.subjects]]
    return event + head + subjects


@functools.cache
def _attnames(model: type[models.Model]) -> tuple[str, ...]:
    return tuple(field.attname for field in model._meta.concrete_fields)


def _loaded(model: type[_M], using: str, row: Mapping[str, Any]) -> _M:
    """An instance of a row this process just wrote, as a query would return it (no round trip)."""
    names = _attnames(model)
    return model.from_db(using, names, [row[name] for name in names])


def _append_postgresql(draft: _Draft, using: str) -> AuditEvent:
    """Append in two statements: lock the head, then write event, subjects and head at once."""
    with connections[using].cursor() as cursor:
        row = _next_row(draft, _locked_head(cursor, draft))
        cursor.execute(_APPEND_SQL, _append_params(row, draft))
        row["id"] = cursor.fetchone()[0]
    event = _loaded(AuditEvent, using, row)
    # Its relations as the ORM path leaves them: the caller's tenant and the moved head.
    head = {"id": row["chain_id"], "key": draft.chain_key, "tenant_id": draft.tenant_id}
    head.update(last_sequence=row["sequence"], last_hash=row["hash"], updated_at=row["occurred_at"])
    event.chain, event.tenant = _loaded(AuditChain, using, head), draft.tenant
    return event


def _recording_scope(tenant: Tenant | None) -> AbstractContextManager[Scope | None]:
    """The row-level security scope an event is appended in.

    Inside a scope the caller's scope stands, so PostgreSQL still refuses an
    event for another clinic's chain. Outside any scope (platform-host
    requests, the sign-in signals, tasks) the event is appended in its own
    chain's scope: the platform chain is visible only in the platform scope.
    """
    if active_scope() is not None:
        return nullcontext()
    return platform_scope() if tenant is None else tenant_scope(tenant)


def audit_record(
    *,
    action: str,
    tenant: Tenant | None,
    outcome: str = Outcome.SUCCESS,
    actor: Any | None = None,
    actor_role: str = "",
    target_type: str = "",
    target_id: str = "",
    request: HttpRequest | None = None,
    details: Mapping[str, Any] | None = None,
    source_ip: str | None = None,
) -> AuditEvent:
    """Append one event to the chain of `tenant` (None: the platform chain).

    Side effects: locks the chain head until the caller's transaction ends.
    Raises ValueError for an unregistered action and AuditDetailError for
    details that could carry free text.
    """
    draft = _draft(
        action=action,
        tenant=tenant,
        outcome=outcome,
        actor=actor,
        actor_role=actor_role,
        target_type=target_type,
        target_id=target_id,
        request=request,
        details=details,
        source_ip=source_ip,
    )
    using = router.db_for_write(AuditEvent)
    # No savepoint: a failure to record must fail the act it records, and
    # skipping SAVEPOINT/RELEASE saves two round trips per event.
    with _recording_scope(tenant), transaction.atomic(using=using, savepoint=False):
        if connections[using].vendor in FAST_PATH_VENDORS:
            event = _append_postgresql(draft, using)
        else:
            event = _append_portable(draft)
    return event
