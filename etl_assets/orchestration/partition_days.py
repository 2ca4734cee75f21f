"""The days of the daily partitions (UTC): the first one, the timestamps they accept, the days a run covers."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from etl_assets.settings import definition_settings
from etl_assets.transform.normalize import AcceptedTimes

FIRST_DAY = definition_settings().first_day
"""The first day a partition exists for (``ETL_FIRST_DAY``), read once a process, as the definitions are loaded."""


def accepted_times(now: datetime | None = None, first_day: date = FIRST_DAY) -> AcceptedTimes:
    """Timestamps a partition exists for: from the first day through the end of today (UTC)."""
    return AcceptedTimes.through_today(first_day, now or datetime.now(UTC))


def days_of(window: dg.TimeWindow) -> list[date]:
    first, end = window.start.date(), window.end.date()
    return [first + timedelta(days=offset) for offset in range((end - first).days)]


def run_partition_days(context: dg.AssetCheckExecutionContext) -> list[date] | None:
    """The days of a check's run when the run is partitioned (one day or a range), else ``None``.

    An unpartitioned check (on ``staging_events``) selected into the partitioned daily job still runs for
    the run's days; each caller decides what an unpartitioned run covers.
    """
    if context.has_partition_key_range or context.has_partition_key:
        return days_of(context.partition_time_window)
    return None
