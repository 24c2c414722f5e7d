"""Give the runtime database role exactly the grants it needs (portal.dbroles).

    python manage.py grant_runtime_role --role settle [--dry-run]

Run as the role that owns the tables (the one that ran `migrate`), after
every migrate. The runtime role must already exist (created by a superuser:
deploy/postgres/initdb, or the RDS master user); the command refuses a role
that is a superuser, has BYPASSRLS or CREATEROLE, or owns any table.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

from portal.dbroles import RoleError, grant_statements, role_problems


class Command(BaseCommand):
    help = "Grant the runtime database role its privileges (run as the owner of the tables, after migrate)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--role", required=True, help="the runtime role web, worker and beat connect as")
        parser.add_argument("--dry-run", action="store_true", help="print the statements without running them")

    def handle(self, *args: Any, role: str, dry_run: bool, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("grant_runtime_role needs PostgreSQL")
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                problems = role_problems(cursor, role)
                if problems:
                    raise CommandError("refusing to grant: " + "; ".join(problems))
                statements = grant_statements(cursor, role=role)
                for statement in statements:
                    if dry_run:
                        self.stdout.write(statement + ";")
                    else:
                        cursor.execute(statement)
        except RoleError as exc:
            raise CommandError(str(exc)) from exc
        if not dry_run:
            self.stdout.write(f"granted the runtime privileges to {role} ({len(statements)} statements)")
