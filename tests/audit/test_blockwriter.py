"""The export's writer thread: blocks hashed and written in order, failures raised in the caller."""

from __future__ import annotations

import hashlib
import io
import threading
from typing import Any

import pytest
from django.db import connection

from audit.blockwriter import BlockWriter
from audit.chain import GENESIS
from audit.exportformat import Filters
from audit.models import AuditChain
from audit.services import segments
from audit.services.integrity import checkpoints_of
from audit.signing import current_signer
from portal.tenancy.context import tenant_scope
from tests.audit.conftest import fill


class _Hashing:
    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.digest = hashlib.sha256()


class _FailingSink(io.BytesIO):
    """Accepts `allowed` bytes, then fails as a full disk would."""

    def __init__(self, allowed: int) -> None:
        super().__init__()
        self.allowed = allowed

    def write(self, data: Any) -> int:
        if self.tell() + len(data) > self.allowed:
            raise OSError(28, "No space left on device")
        return super().write(data)


def _writer_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "export-block-writer"]


def test_blocks_are_hashed_and_written_in_the_order_given():
    out = _Hashing(io.BytesIO())
    writer = BlockWriter(out)
    blocks = [bytes([n % 251]) * (n * 997 % 70_000 + 1) for n in range(200)]
    for block in blocks:
        writer.write(block)
    writer.close()
    assert out.sink.getvalue() == b"".join(blocks)
    assert out.digest.digest() == hashlib.sha256(b"".join(blocks)).digest()
    writer.close()  # twice is harmless


def test_a_failure_on_the_thread_is_raised_in_the_caller_and_the_thread_ends():
    writer = BlockWriter(_Hashing(_FailingSink(allowed=10)))
    writer.write(b"x" * 5)
    writer.write(b"y" * 50)
    with pytest.raises(OSError, match="No space left"):
        for _ in range(100):  # raised at a later write, or at close at the latest
            writer.write(b"z")
        writer.close()
    writer.close(raise_failure=False)
    assert not _writer_threads()


@pytest.mark.postgres
@pytest.mark.django_db
def test_an_export_whose_file_cannot_be_written_fails_and_leaves_no_thread(clinic_a):
    tenant = clinic_a.tenant
    with tenant_scope(tenant):
        fill(tenant, 40)
        chain = AuditChain.objects.get(tenant=tenant)
        with pytest.raises(OSError, match="No space left"):
            segments.write_chain_segment(
                chain=chain,
                first=1,
                last=40,
                jsonl=_FailingSink(allowed=2_000),  # the preamble fits, the events do not
                csv_sink=None,
                header={"chain": chain.key},
                start_prev_hash=GENESIS,
                checkpoints=checkpoints_of(chain),
                filters=Filters(),
                signer=current_signer(),
            )
    assert not _writer_threads()
    # The connection is still usable, with the session's planner settings as they were.
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('enable_sort'), current_setting('enable_bitmapscan')")
        assert cursor.fetchone() == ("on", "on")
