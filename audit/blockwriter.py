"""Hash and write an export's blocks on a thread, in order.

The export's JSONL is hashed (SHA-256, for the signed footer) and written
(encrypted) a block of a few hundred kilobytes at a time. hashlib releases
the GIL while it hashes a buffer of 2 KiB or more, so on a thread that work
runs beside the main thread's rendering of the next block instead of after
it (docs/performance.md, "Export"). Blocks are written in the order given; a
failure on the thread is raised in the caller at its next write or at close.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Protocol

_STOP = None
# Blocks waiting for the thread: enough to ride out a slow write, and a
# bound on the memory they hold (a few MB).
QUEUE_DEPTH = 8


class HashingSink(Protocol):
    digest: Any
    sink: Any


class BlockWriter:
    """write() hands a block to the thread; close() waits until every block is hashed and written."""

    def __init__(self, out: HashingSink) -> None:
        self._out = out
        self._blocks: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUE_DEPTH)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="export-block-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        update, write = self._out.digest.update, self._out.sink.write
        while (block := self._blocks.get()) is not _STOP:
            if self._failure is not None:
                continue  # drain, so that the caller never blocks on a full queue
            try:
                update(block)
                write(block)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                self._failure = exc

    def write(self, block: bytes) -> None:
        self._raise_failure()
        self._blocks.put(block)

    def close(self, *, raise_failure: bool = True) -> None:
        """Wait for every block; raise what failed on the thread (unless told not to). Safe to call twice."""
        if self._thread.is_alive():
            self._blocks.put(_STOP)
            self._thread.join()
        if raise_failure:
            self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure
