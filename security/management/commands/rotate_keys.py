"""Rotate a clinic's data keys and re-encrypt its rows: `manage.py rotate_keys --tenant demo`.

Starts a rotation (or resumes the running one), re-encrypts in batches with a
progress bar on stderr, and retires the old key once no row uses it. Safe to
kill at any point and run again: it continues after the last committed batch.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.models import Tenant
from security.crypto.errors import KeyUnavailableError
from security.crypto.models import KeyPurpose, KeyRotation
from security.crypto.rotation import (
    DEFAULT_BATCH_SIZE,
    ROTATABLE_PURPOSES,
    BatchReport,
    RotationNotReady,
    data_key_rotation_finish,
    data_key_rotation_run,
    data_key_rotation_start,
)

BAR_WIDTH = 30


class ProgressBar:
    """One line on a terminal, redrawn in place; whole lines when not a terminal.

    `stream` is a command's OutputWrapper (self.stderr).
    """

    def __init__(self, stream: Any, label: str) -> None:
        self.stream = stream
        self.label = label
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.last_percent = -1

    def update(self, rotation: KeyRotation, report: BatchReport) -> None:
        total = max(rotation.rows_total, rotation.rows_done, 1)
        percent = min(100, rotation.rows_done * 100 // total)
        filled = BAR_WIDTH * percent // 100
        line = (
            f"{self.label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {percent:3d}% "
            f"{rotation.rows_done}/{total} rows ({report.model_label})"
        )
        if self.tty:
            self.stream.write("\r" + line, ending="")
        elif percent != self.last_percent:
            self.stream.write(line)
        self.stream.flush()
        self.last_percent = percent

    def close(self) -> None:
        if self.tty:
            self.stream.write("")
            self.stream.flush()


class Command(BaseCommand):
    help = "Rotate a clinic's data keys: new key version, re-encrypt every row in batches, retire the old key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="slug of the clinic")
        parser.add_argument(
            "--purpose",
            choices=[*ROTATABLE_PURPOSES, "all"],
            default="all",
            help="which data keys (phi, secret, index; default all)",
        )
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="rows per transaction")
        parser.add_argument(
            "--pause", type=float, default=0.0, help="seconds to sleep between batches (limits database load)"
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help="slices of each table re-encrypted at once, each on its own connection "
            "(default 2 on PostgreSQL, 1 on SQLite)",
        )
        parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"no clinic with slug {options['tenant']!r}")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        if options["workers"] is not None and options["workers"] < 1:
            raise CommandError("--workers must be at least 1")
        purposes = list(ROTATABLE_PURPOSES) if options["purpose"] == "all" else [options["purpose"]]
        try:
            # Start every purpose first, so the wait before retiring is paid once.
            rotations = [data_key_rotation_start(tenant=tenant, purpose=KeyPurpose(purpose)) for purpose in purposes]
            for index, rotation in enumerate(rotations):
                bar = None if options["quiet"] else ProgressBar(self.stderr, f"{tenant.slug} {rotation.purpose:<6}")
                try:
                    rotations[index] = data_key_rotation_run(
                        rotation=rotation,
                        batch_size=options["batch_size"],
                        pause_seconds=options["pause"],
                        on_progress=bar.update if bar else None,
                        workers=options["workers"],
                    )
                finally:
                    if bar is not None:
                        bar.close()
            for index, rotation in enumerate(rotations):
                while True:
                    try:
                        rotations[index] = data_key_rotation_finish(rotation=rotation)
                        break
                    except RotationNotReady as exc:
                        if not options["quiet"]:
                            self.stderr.write(
                                f"{tenant.slug} {rotation.purpose}: waiting {exc.retry_after:.0f} s before retiring "
                                f"the old key ({exc})"
                            )
                        time.sleep(max(0.05, min(exc.retry_after, 5.0)))
        except KeyUnavailableError as exc:
            raise CommandError(f"keys of {tenant.slug}: {exc}") from None
        for rotation in rotations:
            self.stdout.write(
                f"{tenant.slug}: {rotation.purpose} data key now version {rotation.to_version}; "
                f"{rotation.rows_done} rows checked; older versions retired."
            )
