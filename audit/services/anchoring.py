"""Anchoring signed checkpoints outside the database, and reading the anchors back.

Two stores (audit.conf.anchor_store_kind):

- S3 with Object Lock (production): one object per checkpoint,
  `<prefix>/<chain>/<sequence, 20 digits>-<signed at>.json`, written with
  compliance-mode retention, so nobody (the root account included) can delete
  or shorten it before the retention ends. Overwriting a key only adds a
  version; a key with more than one version is reported as tampering, and
  the oldest version is the one believed. The sequence and time are in the
  key, so a verification lists the anchors without reading each one.
- An append-only file per chain (development, tests):
  `SETTLE_AUDIT_ANCHOR_DIR/<chain>.jsonl`, opened with O_APPEND. Outside the
  database, so a database superuser cannot reach it; not out of an
  operator's reach, which is why production refuses it.

A checkpoint is anchored right after its transaction commits (so an anchor
always has a committed checkpoint behind it); if the store is down the
checkpoint stays unanchored (no AuditCheckpointAnchor row) and the next
beat run anchors it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from django.db import transaction
from django.utils import timezone

from audit import conf
from audit.anchors import (
    AnchorError,
    AnchorSet,
    anchor_line,
    anchor_set_from,
    parse_anchor,
    read_anchor_file,
    signed_before,
)
from audit.chain import format_time
from audit.models import AuditChain, AuditCheckpoint, AuditCheckpointAnchor
from audit.verification import Checkpoint

logger = logging.getLogger(__name__)


class AnchorStore(Protocol):
    kind: str

    def put(self, *, chain: str, checkpoint: Checkpoint) -> str:
        """Anchor one checkpoint; returns where it went. Idempotent for the same checkpoint."""
        ...

    def read(self, *, chain: str, before: str | None = None) -> AnchorSet:
        """Every anchored sequence of `chain` and its latest anchor in full; AnchorError if unreadable.

        `before` (a canonical time): only anchors signed before it (an export's end).
        """
        ...

    def describe(self) -> str:
        """Where the anchors are, for messages."""
        ...


def _safe_chain(chain: str) -> str:
    # Chain keys are tenant UUIDs or "platform"; anything else must not become a path.
    if not chain or not all(c.isalnum() or c == "-" for c in chain):
        raise AnchorError(f"not a chain key: {chain!r}")
    return chain


class FileAnchorStore:
    kind = "file"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def describe(self) -> str:
        # Not the server's path: this text reaches the console.
        return "the anchor file store"

    def _path(self, chain: str) -> Path:
        return self.directory / f"{_safe_chain(chain)}.jsonl"

    def put(self, *, chain: str, checkpoint: Checkpoint) -> str:
        path = self._path(chain)
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_APPEND: every write lands at the end, whatever else has the file open.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, anchor_line(chain=chain, checkpoint=checkpoint))
            os.fsync(fd)
        finally:
            os.close(fd)
        return str(path)

    def read(self, *, chain: str, before: str | None = None) -> AnchorSet:
        path = self._path(chain)
        if not path.exists():
            return AnchorSet(source=self.describe())
        try:
            anchors = read_anchor_file(path)
        except OSError as exc:
            raise AnchorError(f"cannot read {path.name} in the anchor file store: {exc.strerror or exc}") from None
        return anchor_set_from(signed_before(anchors, before=before), chain=chain, source=self.describe())


def _stamp(signed_at: str) -> str:
    """A canonical time as it appears in an anchor's object key (no '-' or ':'); sorts the same."""
    return signed_at.replace("-", "").replace(":", "")


@dataclass(frozen=True)
class _Listed:
    sequence: int
    stamp: str
    key: str
    versions: list[str]  # newest first, as S3 lists them


class S3AnchorStore:
    kind = "s3"

    def __init__(self, *, client: Any, bucket: str, prefix: str, retain_days: int) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.retain_days = retain_days

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}/"

    def _key(self, chain: str, checkpoint: Checkpoint) -> str:
        return f"{self.prefix}/{_safe_chain(chain)}/{checkpoint.sequence:020d}-{_stamp(checkpoint.signed_at)}.json"

    def put(self, *, chain: str, checkpoint: Checkpoint) -> str:
        key = self._key(chain, checkpoint)
        listed = self.client.list_object_versions(Bucket=self.bucket, Prefix=key).get("Versions", [])
        if any(v["Key"] == key for v in listed):
            # Already anchored (a retry after the bookkeeping row was lost): a second
            # version would read as an overwrite.
            return f"s3://{self.bucket}/{key}"
        made = self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=anchor_line(chain=chain, checkpoint=checkpoint),
            ContentType="application/json",
            ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=timezone.now() + timedelta(days=self.retain_days),
            ChecksumAlgorithm="SHA256",
        )
        return f"s3://{self.bucket}/{key}#{made.get('VersionId', '')}"

    def _listing(self, chain: str) -> list[_Listed]:
        prefix = f"{self.prefix}/{_safe_chain(chain)}/"
        versions: dict[str, list[str]] = {}
        paginator = self.client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Versions", []):
                versions.setdefault(item["Key"], []).append(item["VersionId"])
            for marker in page.get("DeleteMarkers", []):
                versions.setdefault(marker["Key"], []).append("delete-marker")
        listed = []
        for key, ids in versions.items():
            number, _, rest = key[len(prefix) :].partition("-")
            if not number.isdigit() or not rest.endswith(".json"):
                raise AnchorError(f"s3://{self.bucket}/{key} is not named like an anchor")
            listed.append(_Listed(sequence=int(number), stamp=rest.removesuffix(".json"), key=key, versions=ids))
        return sorted(listed, key=lambda item: item.sequence)

    def read(self, *, chain: str, before: str | None = None) -> AnchorSet:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self._read(chain, before)
        except (BotoCoreError, ClientError) as exc:
            raise AnchorError(f"cannot read the anchors in {self.describe()}: {type(exc).__name__}") from None

    def _read(self, chain: str, before: str | None) -> AnchorSet:
        found = AnchorSet(source=self.describe())
        listed = self._listing(chain)
        if before is not None:
            listed = [item for item in listed if item.stamp < _stamp(before)]
        for item in listed:
            if len(item.versions) > 1:
                found.problems.append(f"the anchor of event {item.sequence} was overwritten")
            found.sequences.add(item.sequence)
        if listed:
            latest = listed[-1]
            # S3 lists a key's versions newest first: the first one written is the last listed.
            original = latest.versions[-1]
            body = self.client.get_object(Bucket=self.bucket, Key=latest.key, VersionId=original)["Body"].read()
            anchor_chain, checkpoint = parse_anchor(body, where=f"s3://{self.bucket}/{latest.key}")
            if anchor_chain != chain or checkpoint.sequence != latest.sequence:
                found.problems.append(f"the anchor s3://{self.bucket}/{latest.key} names another checkpoint")
            else:
                found.latest = checkpoint
        return found


_override: AnchorStore | None = None


def set_anchor_store(store: AnchorStore | None) -> None:
    """Plug in a store (tests); None goes back to the configured one."""
    global _override  # noqa: PLW0603 - one process-wide choice, like the signer factory
    _override = store


def anchor_store() -> AnchorStore:
    """The configured store: S3 when SETTLE_AUDIT_ANCHOR_BUCKET is set, else the file store."""
    if _override is not None:
        return _override
    if conf.anchor_store_kind() == "s3":
        import boto3

        return S3AnchorStore(
            client=boto3.client("s3", **conf.archive_client_kwargs()),
            bucket=conf.anchor_bucket(),
            prefix=conf.anchor_prefix(),
            retain_days=conf.anchor_retain_days(),
        )
    return FileAnchorStore(conf.anchor_dir())


def as_checkpoint(row: AuditCheckpoint) -> Checkpoint:
    return Checkpoint(
        sequence=row.sequence,
        hash=row.head_hash,
        signed_at=format_time(row.signed_at),
        key_id=row.key_id,
        algorithm=row.algorithm,
        signature=row.signature,
    )


def checkpoint_anchor(*, checkpoint: AuditCheckpoint, store: AnchorStore | None = None) -> AuditCheckpointAnchor:
    """Copy one committed checkpoint to the anchor store and note where. System task.

    Call it in the checkpoint's chain scope, after the checkpoint committed.
    Raises whatever the store raises; the checkpoint then stays unanchored
    and `anchor_pending` retries it.
    """
    store = store or anchor_store()
    chain = checkpoint.chain
    location = store.put(chain=chain.key, checkpoint=as_checkpoint(checkpoint))
    with transaction.atomic():
        anchor, _ = AuditCheckpointAnchor.objects.get_or_create(
            checkpoint=checkpoint, defaults={"chain": chain, "store": store.kind, "location": location[:1024]}
        )
    return anchor


def anchor_pending(*, chain: AuditChain, store: AnchorStore | None = None) -> int:
    """Anchor every checkpoint of `chain` that is not anchored yet, oldest first; returns how many.

    In the chain's scope. Stops at the first store failure (logged): the
    next beat run tries again.
    """
    store = store or anchor_store()
    pending = AuditCheckpoint.objects.filter(chain=chain, anchor__isnull=True).select_related("chain")
    done = 0
    for checkpoint in pending.order_by("sequence"):
        try:
            checkpoint_anchor(checkpoint=checkpoint, store=store)
        except Exception:
            logger.exception("audit checkpoint %s of chain %s could not be anchored", checkpoint.sequence, chain.key)
            break
        done += 1
    return done


def chain_anchors(*, chain: AuditChain, store: AnchorStore | None = None, before: str | None = None) -> AnchorSet:
    """What the anchor store holds for `chain` (read it before the database: see chain_verify)."""
    return (store or anchor_store()).read(chain=chain.key, before=before)
