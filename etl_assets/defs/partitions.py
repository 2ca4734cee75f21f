"""Daily partitions (UTC) shared by ``events`` and the enrichment tables, and the times they accept."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from etl_assets.settings import definition_settings
from etl_assets.transform.normalize import AcceptedTimes

FIRST_DAY = definition_settings().first_day

daily_partitions = dg.DailyPartitionsDefinition(start_date=FIRST_DAY.isoformat(), timezone="UTC", end_offset=1)
"""One partition per UTC day from ``ETL_FIRST_DAY`` through today (``end_offset=1``: today's events load today)."""

single_run_backfill = dg.BackfillPolicy.single_run()
"""A backfill is one run (``dagster asset materialize --partition-range`` executes only single-run policies); the
run merges its days several at a time (``ETL_MERGE_DAYS_AT_ONCE``)."""

DAYS_PER_SENSOR_RUN = 7
"""The most days ``staged_days_sensor`` puts into one run: a backlog becomes runs of a week that merge in parallel."""


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
