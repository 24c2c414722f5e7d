"""Chain verification over a stream of records: in the database and offline.

Pure Python (no Django), shared by `manage.py verify_audit`, the console's
verify button and `python -m audit.verify`. It walks events in sequence order
with bounded memory and reports problems by sequence; `first_bad_sequence`
is the earliest one.

What each tampering looks like:
- an edited event: its content no longer matches its hash;
- a deleted event: a gap in the sequence numbers;
- an inserted event: everything after it moved up one place, so the next
  original event's hash matches its *old* sequence (reported at that old
  sequence, which is where the insertion happened);
- reordered events: an event's hash matches another sequence than its own;
- a rewrite with every hash recomputed: a signed checkpoint disagrees;
- events removed from the end: the chain head (or a checkpoint) is further on;
- checkpoint rows deleted (to hide a rewrite or a cut after them): the
  checkpoint anchored outside the database (audit.anchors) disagrees with
  the chain or lies beyond its end, its sequence is anchored but has no row,
  or the chain's own `audit.checkpoint_signed` event names it;
- a checkpoint at S is always recorded by event S+1 (`audit.checkpoint_signed`,
  same transaction), so a chain cut back to a checkpoint is one event short.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from audit.chain import GENESIS, checkpoint_message, event_hash
from audit.signing import SignatureVerifier

if TYPE_CHECKING:
    from audit.anchors import AnchorSet

MAX_PROBLEMS = 50
CHECKPOINT_ACTION = "audit.checkpoint_signed"


def reaches_its_generation(header: Mapping[str, Any]) -> bool:
    """Whether an export's range ends after it was generated, so it holds every event then committed.

    Canonical times compare as text. Its checkpoints and anchors were read
    before its events, so the event recording each checkpoint is in it too.
    """
    end, generated = header.get("to"), header.get("generated_at")
    return isinstance(end, str) and isinstance(generated, str) and end >= generated


@dataclass(frozen=True)
class Problem:
    sequence: int
    kind: str
    message: str

    def __str__(self) -> str:
        return f"sequence {self.sequence}: {self.message}"


@dataclass(frozen=True)
class Checkpoint:
    sequence: int
    hash: str
    signed_at: str
    key_id: str
    algorithm: str
    signature: str


@dataclass
class VerificationResult:
    chain: str
    events_checked: int = 0
    links_checked: int = 0
    checkpoints_checked: int = 0
    signatures_checked: bool = False
    first_sequence: int | None = None
    last_sequence: int = 0
    last_hash: str = GENESIS
    problems: list[Problem] = field(default_factory=list)
    more_problems: bool = False
    # Where the anchors came from and the sequence of the latest one the chain was held to.
    anchor_source: str | None = None
    anchor_sequence: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_sequence(self) -> int | None:
        return min((p.sequence for p in self.problems), default=None)

    def summary(self) -> str:
        if self.ok:
            what = f"{self.events_checked} events"
            if self.first_sequence is not None:
                what += f" (sequences {self.first_sequence}-{self.last_sequence})"
            signed = (
                f", {self.checkpoints_checked} signed checkpoints agree"
                if self.signatures_checked
                else f", {self.checkpoints_checked} checkpoints agree (signatures not checked)"
            )
            return f"Chain {self.chain} is intact: {what}{signed}{self._anchor_note()}."
        first = min(self.problems, key=lambda p: p.sequence)
        return f"Chain {self.chain} is BROKEN at sequence {first.sequence}: {first.message}"

    def _anchor_note(self) -> str:
        if self.anchor_source is None:
            return ""
        if self.anchor_sequence is None:
            return f"; no checkpoint anchored in {self.anchor_source} yet"
        return f"; it reaches the latest checkpoint anchored in {self.anchor_source} (event {self.anchor_sequence})"


class ChainVerifier:
    """Feed events (and link-only stubs) in stored order; then call finish()."""

    def __init__(
        self,
        chain: str,
        *,
        start_sequence: int = 1,
        start_prev_hash: str = GENESIS,
        checkpoints: Iterable[Checkpoint] = (),
        signer: SignatureVerifier | None = None,
        anchors: AnchorSet | None = None,
        complete: bool = False,
    ) -> None:
        """`checkpoints`: the signed checkpoints stored with the chain (rows, or an export's lines).
        `anchors`: what the external anchor store holds for this chain, if one was read.
        `complete`: the events fed reach everything the chain held when they were read (the whole
        chain in place, or an export whose range reaches its generation time)."""
        self._complete = complete
        self.result = VerificationResult(chain=chain, last_sequence=start_sequence - 1, last_hash=start_prev_hash)
        self._start_sequence = start_sequence
        self._start_prev_hash = start_prev_hash
        self._next = start_sequence
        self._prev_hash = start_prev_hash
        self._signer = signer
        self._checkpoints: dict[int, Checkpoint] = {}
        # Every checkpoint sequence known (rows, bad signatures included, and anchors):
        # each must be recorded by the event after it.
        self._known: set[int] = set()
        self._anchored: set[int] = set()
        self._anchored_sequences: set[int] = set()
        self.result.signatures_checked = signer is not None
        for checkpoint in checkpoints:
            self._known.add(checkpoint.sequence)
            self._add_checkpoint(checkpoint)
        if anchors is not None:
            self._add_anchors(anchors)

    def problem(self, sequence: int, kind: str, message: str) -> None:
        if len(self.result.problems) >= MAX_PROBLEMS:
            self.result.more_problems = True
            return
        self.result.problems.append(Problem(sequence, kind, message))

    def _add_checkpoint(self, checkpoint: Checkpoint) -> None:
        if self._signer is not None:
            if not self._signature_ok(checkpoint):
                self.problem(
                    checkpoint.sequence,
                    "bad_signature",
                    f"the checkpoint signed at {checkpoint.signed_at} has an invalid signature or one by an "
                    f"untrusted key (key {checkpoint.key_id}): checkpoints were forged or altered",
                )
                return
        self._checkpoints[checkpoint.sequence] = checkpoint

    def _signature_ok(self, checkpoint: Checkpoint) -> bool:
        if self._signer is None:
            return True
        message = checkpoint_message(
            chain=self.result.chain,
            sequence=checkpoint.sequence,
            head_hash=checkpoint.hash,
            signed_at=checkpoint.signed_at,
        )
        return self._signer.verify(
            message, checkpoint.signature, key_id=checkpoint.key_id, algorithm=checkpoint.algorithm
        )

    def _add_anchors(self, anchors: AnchorSet) -> None:
        """Hold the chain to the checkpoints anchored outside the database.

        An anchored sequence without its checkpoint here means rows were
        deleted; the latest anchor becomes a checkpoint the chain must reach
        and agree with, whatever rows remain.
        """
        source = anchors.source
        self.result.anchor_source = source
        for message in anchors.problems:
            self.problem(self._start_sequence, "anchor_store", f"{message} ({source}): anchors were tampered with")
        self._anchored_sequences = set(anchors.sequences)
        latest = anchors.latest
        if latest is None or latest.sequence < self._start_sequence - 1:
            return
        if not self._signature_ok(latest):
            self.problem(
                latest.sequence,
                "bad_signature",
                f"the checkpoint anchored in {source} for event {latest.sequence} has an invalid signature or one "
                f"by an untrusted key (key {latest.key_id}): the anchor is forged",
            )
            return
        self.result.anchor_sequence = latest.sequence
        if latest.sequence == self._start_sequence - 1:
            if latest.hash != self._start_prev_hash:
                self.problem(
                    self._start_sequence,
                    "checkpoint_mismatch",
                    f"event {latest.sequence} differs from the checkpoint anchored outside the database "
                    f"(signed at {latest.signed_at}): the chain was rewritten at or before it",
                )
            return
        stored = self._checkpoints.get(latest.sequence)
        if stored is not None and stored != latest:
            self.problem(
                latest.sequence,
                "checkpoint_mismatch",
                f"the stored checkpoint of event {latest.sequence} differs from its anchor outside the database "
                f"({source}): the checkpoint was replaced",
            )
        self._known.add(latest.sequence)
        self._anchored.add(latest.sequence)
        self._checkpoints[latest.sequence] = latest

    def _check_checkpoint_event(self, sequence: int, record: Mapping[str, Any]) -> None:
        """Cross-check the chain's own record of its checkpoints against the checkpoints held."""
        if sequence - 1 in self._known and sequence - 1 >= self._start_sequence - 1:
            details = record.get("details")
            claimed = details.get("sequence") if isinstance(details, dict) else None
            if record.get("action") != CHECKPOINT_ACTION or claimed != sequence - 1:
                self.problem(
                    sequence,
                    "checkpoint_event",
                    f"the checkpoint of event {sequence - 1} was recorded by event {sequence}, but event "
                    f"{sequence} is {record.get('action')!r}: events after the checkpoint were deleted or rewritten",
                )
            return
        if record.get("action") != CHECKPOINT_ACTION:
            return
        details = record.get("details")
        claimed = details.get("sequence") if isinstance(details, dict) else None
        if not isinstance(claimed, int) or claimed != sequence - 1:
            self.problem(
                sequence, "checkpoint_event", f"records a checkpoint of event {claimed}, not of event {sequence - 1}"
            )
        elif claimed >= self._start_sequence:
            self.problem(
                claimed,
                "checkpoint_deleted",
                f"event {sequence} records a signed checkpoint of event {claimed}, but that checkpoint is "
                "missing: checkpoint rows were deleted",
            )

    def _start(self, sequence: int) -> None:
        if self.result.first_sequence is None:
            self.result.first_sequence = sequence

    def _check_position(self, sequence: int) -> None:
        if sequence > self._next:
            missing = f"{self._next}" if sequence == self._next + 1 else f"{self._next}-{sequence - 1}"
            self.problem(self._next, "missing", f"event(s) {missing} are missing (deleted)")
        elif sequence < self._next:
            self.problem(sequence, "out_of_order", f"appears after {self._next - 1} (duplicated or reordered)")

    def _after(self, sequence: int, stored_hash: str) -> None:
        checkpoint = self._checkpoints.pop(sequence, None)
        if checkpoint is not None:
            self.result.checkpoints_checked += 1
            if checkpoint.hash != stored_hash:
                where = " anchored outside the database" if sequence in self._anchored else ""
                self.problem(
                    sequence,
                    "checkpoint_mismatch",
                    f"differs from the checkpoint{where} signed at {checkpoint.signed_at}: "
                    "the chain was rewritten at or before this event",
                )
        self._prev_hash = stored_hash
        self._next = max(self._next, sequence + 1)
        self.result.last_sequence = sequence
        self.result.last_hash = stored_hash

    def add_event(self, record: Mapping[str, Any]) -> None:
        sequence = int(record["sequence"])
        self._start(sequence)
        self.result.events_checked += 1
        self._check_position(sequence)
        link_broken = record["prev_hash"] != self._prev_hash and sequence == self._next
        if record.get("chain") != self.result.chain:
            self.problem(sequence, "wrong_chain", f"belongs to chain {record.get('chain')!r}")
        computed = event_hash(record)
        if computed == record["hash"] and link_broken:
            self.problem(sequence, "broken_link", "its previous-hash does not match the event before it")
        if computed != record["hash"]:
            moved_from = self._moved_from(record)
            if moved_from is not None:
                kind = "inserted" if moved_from < sequence else "reordered"
                self.problem(
                    min(moved_from, sequence),
                    kind,
                    f"the event now at {sequence} was recorded as {moved_from}: "
                    + ("an event was inserted before it" if kind == "inserted" else "events were reordered"),
                )
            else:
                self.problem(sequence, "altered", "its content does not match its hash (edited)")
        self._check_checkpoint_event(sequence, record)
        self._after(sequence, str(record["hash"]))

    def _moved_from(self, record: Mapping[str, Any]) -> int | None:
        sequence = int(record["sequence"])
        for delta in (-1, 1, -2, 2):
            candidate = sequence + delta
            if candidate >= 1 and event_hash({**record, "sequence": candidate}) == record["hash"]:
                return candidate
        return None

    def add_link(self, sequence: int, prev_hash: str, stored_hash: str) -> None:
        """An event present only as its hashes (outside an export's filters)."""
        self._start(sequence)
        self.result.links_checked += 1
        self._check_position(sequence)
        if prev_hash != self._prev_hash and sequence == self._next:
            self.problem(sequence, "broken_link", "its previous-hash does not match the event before it")
        self._after(sequence, stored_hash)

    def finish(self, *, head_sequence: int | None = None, head_hash: str | None = None) -> VerificationResult:
        """Report what the chain fails to reach. When the events are complete (`complete`, or a head
        given: the whole chain in place), a checkpoint of the last event is also one event short:
        the audit.checkpoint_signed event that recorded it is gone."""
        last = self.result.last_sequence
        source = self.result.anchor_source
        for sequence in sorted(self._anchored_sequences):
            # Beyond the end, the latest anchor already says the chain was cut short.
            if self._start_sequence <= sequence <= last and sequence not in self._known:
                self.problem(
                    sequence,
                    "checkpoint_deleted",
                    f"the checkpoint of event {sequence} is anchored outside the database ({source}) "
                    "but is missing here: checkpoint rows were deleted",
                )
        for sequence in sorted(self._checkpoints):
            if sequence > last:
                what = (
                    "a checkpoint anchored outside the database"
                    if sequence in self._anchored
                    else "a signed checkpoint"
                )
                self.problem(
                    last + 1,
                    "truncated",
                    f"{what} covers event {sequence} but the chain ends at {last}: events were removed from the end",
                )
        complete = self._complete or head_sequence is not None
        if complete and last in self._known and last >= self._start_sequence:
            self.problem(
                last + 1,
                "truncated",
                f"the checkpoint of event {last} was recorded by event {last + 1}, which is missing: "
                "events were removed from the end and the head rewound",
            )
        if head_sequence is not None:
            if head_sequence > self.result.last_sequence:
                self.problem(
                    self.result.last_sequence + 1,
                    "truncated",
                    f"the chain head is at {head_sequence} but the events end at "
                    f"{self.result.last_sequence}: events were removed from the end",
                )
            elif head_sequence < self.result.last_sequence:
                self.problem(
                    head_sequence + 1,
                    "appended",
                    f"events after {head_sequence} were not written by the recorder (the head is at {head_sequence})",
                )
            elif head_hash is not None and head_hash != self.result.last_hash:
                self.problem(head_sequence, "head_mismatch", "the last event's hash differs from the chain head")
        return self.result
