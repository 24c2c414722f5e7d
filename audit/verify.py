"""Offline verification of an audit export or archive: `python -m audit.verify FILE`.

Needs only this package and the Python standard library (plus nothing from
Django). Exit status: 0 intact, 1 tampered, truncated or otherwise invalid,
2 the file could not be read or the arguments are wrong.

FILE is a JSONL export (or archive segment), or an archive manifest
(manifest.json) whose segment files sit in the same folder.

Signatures (checkpoints, the export seal, the archive manifest) are checked
against keys you give it, never against a key the file merely names:

- --public-key FILE (PEM; repeat it for a key change): the key provider's
  public signing key, from `manage.py audit_signing_key`. A signature by any
  other key is a failure, even if it is mathematically valid: whoever rewrites
  a file can sign it with a key of their own. The output names the
  fingerprint (SHA256:…) of every key that verified something.
- --key-file FILE or SETTLE_AUDIT_SIGNING_KEY (base64): the legacy HMAC key,
  for files and checkpoints signed before the key provider signed them.

Without either, the chain, the links and the file digest are still checked;
the output says plainly that signatures were not, and lists the fingerprints
of the keys the file claims; --require-signatures makes that a failure.

--anchors PATH: the checkpoints anchored outside the database (the
development anchor file `<chain>.jsonl`, or a folder of the anchor objects
copied from the S3 bucket). The segment must reach and agree with the latest
anchor signed before the export's end, and hold every anchored checkpoint in
its range: a rewrite or a cut made in the database before the export fails.
(An export also carries that latest anchor itself, as a checkpoint line.)

Checking public-key signatures needs the `cryptography` package, imported only
when a signature is checked; the rest needs only the standard library.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from audit.anchors import AnchorError, anchor_set_from, read_anchor_path, signed_before
from audit.chain import HASHED_FIELDS, digest_text, dumps_line
from audit.exportformat import FORMAT_NAME, FORMAT_VERSION, footer_message
from audit.signing import (
    PUBLIC_KEY_ALGORITHMS,
    KeyFormatError,
    PublicKey,
    SignatureVerifier,
    public_key_from_key_id,
)
from audit.verification import ChainVerifier, Checkpoint, reaches_its_generation
from audit.verifykeys import NEEDS_CRYPTOGRAPHY, key_lines_for, signer_from

MANIFEST_FORMAT = "settle-audit-archive-manifest"
EXIT_OK, EXIT_INVALID, EXIT_UNREADABLE = 0, 1, 2
# (chain, checkpoint) pairs read with --anchors.
Anchors = list[tuple[str, Checkpoint]]


class Invalid(Exception):
    """The file is not a valid, untampered export: the message says why."""


@dataclass
class Report:
    ok: bool
    lines: list[str] = field(default_factory=list)
    first_bad_sequence: int | None = None
    last_sequence: int | None = None
    last_hash: str | None = None
    first_prev_hash: str | None = None
    first_sequence: int | None = None
    events: int = 0
    # Every (key id, algorithm) a signature in the file names.
    signing_keys: set[tuple[str, str]] = field(default_factory=set)

    def claimed_keys(self) -> list[PublicKey]:
        """The public keys the file's signatures name (unverified claims); ImportError without `cryptography`."""
        keys = []
        for key_id, algorithm in sorted(self.signing_keys):
            if algorithm in PUBLIC_KEY_ALGORITHMS:
                try:
                    keys.append(public_key_from_key_id(key_id, algorithm))
                except KeyFormatError:
                    continue
        return keys


def _lines(stream: BinaryIO) -> Iterator[tuple[int, bytes, dict[str, Any]]]:
    for number, raw in enumerate(stream, start=1):
        if not raw.endswith(b"\n"):
            raise Invalid(f"line {number} is cut off: the file is truncated")
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise Invalid(f"line {number} is not valid JSON: the file is corrupt") from None
        if not isinstance(obj, dict) or "type" not in obj:
            raise Invalid(f"line {number} is not an export record")
        if dumps_line(obj) != raw:
            raise Invalid(f"line {number} is not in canonical form: it was edited")
        yield number, raw, obj


def _checkpoint(number: int, obj: dict[str, Any]) -> Checkpoint:
    try:
        return Checkpoint(
            sequence=int(obj["sequence"]),
            hash=str(obj["hash"]),
            signed_at=str(obj["signed_at"]),
            key_id=str(obj["key_id"]),
            algorithm=str(obj["algorithm"]),
            signature=str(obj["signature"]),
        )
    except (KeyError, TypeError, ValueError):
        raise Invalid(f"line {number}: malformed checkpoint") from None


def _segment_verifier(
    header: dict[str, Any],
    checkpoints: list[Checkpoint],
    signer: SignatureVerifier | None,
    anchors: Anchors | None,
    anchor_source: str,
) -> ChainVerifier:
    """The verifier for the events after the header (and any checkpoints) were read.

    With anchors, the segment is held to those signed before its end (the
    header's "to"): such an anchor covers an event that happened before it.
    """
    chain = str(header.get("chain"))
    anchor_set = None
    if anchors is not None:
        before = str(header["to"]) if header.get("to") else None
        anchor_set = anchor_set_from(signed_before(anchors, before=before), chain=chain, source=anchor_source)
    return ChainVerifier(
        chain,
        start_sequence=int(header["first_sequence"]),
        start_prev_hash=str(header["start_prev_hash"]),
        checkpoints=checkpoints,
        signer=signer,
        anchors=anchor_set,
        complete=reaches_its_generation(header),
    )


def verify_export(
    stream: BinaryIO,
    *,
    signer: SignatureVerifier | None,
    anchors: Anchors | None = None,
    anchor_source: str = "the anchors given",
) -> Report:
    """Verify one JSONL export/segment. Raises Invalid for structural damage."""
    digest = hashlib.sha256()
    rows = _lines(stream)
    try:
        number, raw, header = next(rows)
    except StopIteration:
        raise Invalid("the file is empty") from None
    if header.get("type") != "header" or header.get("format") != FORMAT_NAME:
        raise Invalid("line 1 is not a Settle audit export header")
    if header.get("version") != FORMAT_VERSION:
        raise Invalid(f"unsupported export version {header.get('version')!r}")
    digest.update(raw)
    checkpoints: list[Checkpoint] = []
    verifier: ChainVerifier | None = None
    footer: dict[str, Any] | None = None
    for number, raw, obj in rows:
        if footer is not None:
            raise Invalid(f"line {number} follows the footer: data was appended")
        kind = obj["type"]
        if kind == "footer":
            footer = obj
            expected = digest_text(digest.digest())
            if obj.get("sha256") != expected:
                raise Invalid("the file's digest does not match its footer: a line was altered, added or removed")
            continue
        digest.update(raw)
        if kind == "checkpoint":
            if verifier is not None:
                raise Invalid(f"line {number}: checkpoint after the events")
            checkpoints.append(_checkpoint(number, obj))
            continue
        if verifier is None:
            verifier = _segment_verifier(header, checkpoints, signer, anchors, anchor_source)
        try:
            if kind == "event":
                if set(obj) != {"type", *HASHED_FIELDS, "hash"}:
                    raise Invalid(f"line {number}: event has unexpected fields")
                verifier.add_event(obj)
            elif kind == "link":
                verifier.add_link(int(obj["sequence"]), str(obj["prev_hash"]), str(obj["hash"]))
            else:
                raise Invalid(f"line {number}: unknown record type {kind!r}")
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, Invalid):
                raise
            raise Invalid(f"line {number}: malformed {kind} record") from None
    if footer is None:
        raise Invalid("the footer is missing: the file is truncated")
    if verifier is None:
        verifier = _segment_verifier(header, checkpoints, signer, anchors, anchor_source)
    result = verifier.finish()
    report = Report(ok=result.ok)
    counted = result.events_checked + result.links_checked
    if footer.get("events", -1) + footer.get("links", -1) != counted:
        report.ok = False
        report.lines.append(
            f"the footer counts {footer.get('events')} events and {footer.get('links')} links, the file has {counted}"
        )
    if counted and (footer.get("last_sequence") != result.last_sequence or footer.get("last_hash") != result.last_hash):
        report.ok = False
        report.lines.append("the footer's last sequence/hash do not match the last event")
    if signer is not None:
        if not signer.verify(
            footer_message(footer),
            str(footer.get("signature", "")),
            key_id=str(footer.get("key_id")),
            algorithm=str(footer.get("algorithm")),
        ):
            report.ok = False
            report.lines.append(
                "the export's seal (footer signature) is invalid: the file was rewritten or the key is wrong"
            )
    report.signing_keys = {(c.key_id, c.algorithm) for c in checkpoints}
    report.signing_keys.add((str(footer.get("key_id")), str(footer.get("algorithm"))))
    report.lines = [str(p) for p in result.problems] + report.lines
    if result.more_problems:
        report.lines.append("… more problems not listed")
    report.first_bad_sequence = result.first_bad_sequence
    report.first_sequence = result.first_sequence
    report.first_prev_hash = str(header["start_prev_hash"])
    report.last_sequence = result.last_sequence if counted else None
    report.last_hash = result.last_hash if counted else None
    report.events = result.events_checked
    summary = result.summary() if result.ok else ""
    if report.ok:
        report.lines.insert(0, summary)
    else:
        report.lines.insert(
            0,
            f"TAMPERED: {header.get('chain')}"
            + (f" (first bad sequence {report.first_bad_sequence})" if report.first_bad_sequence else ""),
        )
    return report


def verify_manifest(
    path: Path,
    manifest: dict[str, Any],
    *,
    signer: SignatureVerifier | None,
    anchors: Anchors | None = None,
    anchor_source: str = "the anchors given",
) -> Report:
    """Verify an archive manifest and every segment file it lists (same folder)."""
    if manifest.get("format") != MANIFEST_FORMAT:
        raise Invalid("not a Settle audit archive manifest")
    if signer is not None and not signer.verify(
        footer_message(manifest),
        str(manifest.get("signature", "")),
        key_id=str(manifest.get("key_id")),
        algorithm=str(manifest.get("algorithm")),
    ):
        failed = Report(ok=False, lines=["TAMPERED: the manifest's signature is invalid"])
        failed.signing_keys.add((str(manifest.get("key_id")), str(manifest.get("algorithm"))))
        return failed
    report = Report(ok=True)
    report.signing_keys.add((str(manifest.get("key_id")), str(manifest.get("algorithm"))))
    expected_prev: str | None = None
    expected_seq: int | None = None
    for segment in manifest.get("segments", []):
        name = Path(str(segment["object_key"])).name
        file = path.parent / name
        if not file.is_file():
            raise Invalid(f"segment file {name} listed in the manifest is missing")
        data = file.read_bytes()
        if digest_text(hashlib.sha256(data).digest()) != segment["sha256"]:
            report.ok = False
            report.lines.append(f"segment {name}: SHA-256 differs from the manifest (file altered)")
            continue
        with file.open("rb") as stream:
            sub = verify_export(stream, signer=signer, anchors=anchors, anchor_source=anchor_source)
        if not sub.ok:
            report.ok = False
            report.lines.extend(f"segment {name}: {line}" for line in sub.lines)
            continue
        if segment["first_prev_hash"] != sub.first_prev_hash or segment["last_hash"] != sub.last_hash:
            report.ok = False
            report.lines.append(f"segment {name}: its first/last hashes differ from the manifest")
        if expected_prev is not None and (
            segment["first_prev_hash"] != expected_prev or segment["first_sequence"] != expected_seq
        ):
            report.ok = False
            report.lines.append(f"segment {name} does not continue the previous segment: a month is missing or altered")
        expected_prev, expected_seq = segment["last_hash"], int(segment["last_sequence"]) + 1
        report.events += sub.events
        report.signing_keys |= sub.signing_keys
    if report.ok:
        report.lines.insert(
            0,
            f"Archive of chain {manifest.get('chain')} is intact: {len(manifest.get('segments', []))} segments, {report.events} events.",
        )
    else:
        report.lines.insert(0, f"TAMPERED: archive of chain {manifest.get('chain')}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audit.verify", description="Verify a Settle audit export offline.")
    parser.add_argument("file", help="export .jsonl file, archive segment, or archive manifest.json")
    parser.add_argument(
        "--public-key",
        action="append",
        metavar="FILE",
        help="PEM public signing key to trust (from `manage.py audit_signing_key`); repeatable",
    )
    parser.add_argument("--key-file", help="file holding the base64 legacy HMAC key (else SETTLE_AUDIT_SIGNING_KEY)")
    parser.add_argument("--key-id", help="id of that key (default: SETTLE_AUDIT_SIGNING_KEY_ID or local-hmac-1)")
    parser.add_argument("--require-signatures", action="store_true", help="fail when no key is given")
    parser.add_argument(
        "--anchors",
        metavar="PATH",
        help="the checkpoints anchored outside the database: an anchor file (<chain>.jsonl) or a folder of "
        "anchor objects copied from the bucket; the segment must agree with them",
    )
    args = parser.parse_args(argv)
    path = Path(args.file)
    out, err = sys.stdout, sys.stderr
    try:
        signer = signer_from(args)
    except (OSError, ValueError) as exc:
        err.write(f"error: cannot use the signing key: {exc}\n")
        return EXIT_UNREADABLE
    if signer is None and args.require_signatures:
        err.write(
            "error: --require-signatures given but no key (--public-key, --key-file or SETTLE_AUDIT_SIGNING_KEY)\n"
        )
        return EXIT_UNREADABLE
    anchors: Anchors | None = None
    if args.anchors:
        try:
            anchors = read_anchor_path(Path(args.anchors))
        except (OSError, AnchorError) as exc:
            err.write(f"error: cannot use the anchors: {exc}\n")
            return EXIT_UNREADABLE
    source = str(args.anchors or "")
    try:
        with path.open("rb") as stream:
            first = stream.read(1)
            stream.seek(0)
            if first == b"{" and path.suffix == ".json":
                report = verify_manifest(path, json.load(stream), signer=signer, anchors=anchors, anchor_source=source)
            else:
                report = verify_export(stream, signer=signer, anchors=anchors, anchor_source=source)
    except OSError as exc:
        err.write(f"error: cannot read {path}: {exc.strerror or exc}\n")
        return EXIT_UNREADABLE
    except ImportError:
        err.write(f"error: {NEEDS_CRYPTOGRAPHY}\n")
        return EXIT_UNREADABLE
    except (Invalid, ValueError, KeyError, TypeError) as exc:
        message = str(exc) if isinstance(exc, Invalid) else f"malformed file ({type(exc).__name__})"
        err.write(f"TAMPERED or invalid: {path}: {message}\n")
        return EXIT_INVALID
    key_lines = key_lines_for(report.claimed_keys, signer)
    if any(problem for problem, _ in key_lines):
        report.ok = False
    stream_out = out if report.ok else err
    for line in report.lines:
        stream_out.write(line + "\n")
    for _, line in key_lines:
        stream_out.write(line + "\n")
    if report.ok and signer is None:
        out.write("WARNING: signatures were NOT checked (no signing key given); the chain and digest were.\n")
    return EXIT_OK if report.ok else EXIT_INVALID


if __name__ == "__main__":
    sys.exit(main())
