"""Daily partitions (UTC) shared by ``events`` and the enrichment tables, and the times they accept."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from etl_assets.settings import Settings
from etl_assets.transform.normalize import AcceptedTimes

FIRST_DAY = Settings.from_env().first_day

daily_partitions = dg.DailyPartitionsDefinition(start_date=FIRST_DAY.isoformat(), timezone="UTC", end_offset=1)
"""One partition per UTC day from ``ETL_FIRST_DAY`` through today (``end_offset=1``: today's events load today)."""

BACKFILL_DAYS_PER_RUN = 7
weekly_runs_backfill = dg.BackfillPolicy.multi_run(max_partitions_per_run=BACKFILL_DAYS_PER_RUN)
"""A backfill runs a week of days per run: a week is one run (its steps' start-up paid once), a month is five runs
that merge in parallel on as many run workers as the queue and the ``warehouse`` pool allow (days merge in
parallel; each day's merge holds only its own day's lock)."""


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
