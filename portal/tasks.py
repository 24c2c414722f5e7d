"""Platform tasks."""

from __future__ import annotations

from celery import shared_task
from django.db import connection


@shared_task(name="portal.tasks.health_probe")
def health_probe(value: int) -> dict[str, object]:
    """Round trip through the broker, a worker and the database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        (database_ok,) = cursor.fetchone()
    return {"echo": value, "database": database_ok == 1}
