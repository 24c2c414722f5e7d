"""Scan the database (every model's rows) and given files for card numbers."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.tenancy.context import platform_scope
from security.cardscan import find_card_numbers


class Command(BaseCommand):
    help = "Fail if a Luhn-valid card number appears in the database or the given log files."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="*", type=Path, help="log files or task-result dumps to scan as well")

    def handle(self, *args: Any, **options: Any) -> None:
        findings: list[str] = []
        dump = io.StringIO()
        with platform_scope():
            call_command("dumpdata", stdout=dump, verbosity=0)
        findings += [f"database: {hit}" for hit in find_card_numbers(dump.getvalue())]
        for path in options["files"]:
            if not path.is_file():
                raise CommandError(f"{path} is not a readable file")
            text = path.read_text(errors="replace")
            findings += [f"{path}: {hit}" for hit in find_card_numbers(text)]
        if findings:
            for finding in findings:
                self.stderr.write(finding)
            raise CommandError(f"{len(findings)} card number(s) found")
        self.stdout.write("No card numbers found.")
