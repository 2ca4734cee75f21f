"""Event days: a day is a calendar date in UTC, and its rows are those from its midnight UTC to the next."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of ``day``; the day ends where ``day_start`` of the next begins."""
    return datetime.combine(day, time(), UTC)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The start of ``day`` and of the next: the half-open range of moments in ``day``."""
    start = day_start(day)
    return start, start + timedelta(days=1)
