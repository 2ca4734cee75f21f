"""The days of the daily partitions: which days a partition window covers, which timestamps are accepted."""

from datetime import UTC, date, datetime

import dagster as dg

from etl_assets.orchestration.partition_days import accepted_times, days_of


def test_a_partition_window_covers_its_days():
    window = dg.TimeWindow(datetime(2025, 8, 1, tzinfo=UTC), datetime(2025, 8, 4, tzinfo=UTC))
    assert days_of(window) == [date(2025, 8, 1), date(2025, 8, 2), date(2025, 8, 3)]


def test_accepted_times_run_from_the_first_day_through_the_end_of_today():
    accepted = accepted_times(datetime(2026, 11, 21, 23, 59, tzinfo=UTC), first_day=date(2025, 1, 1))
    assert accepted.earliest == datetime(2025, 1, 1, tzinfo=UTC)
    assert accepted.latest == datetime(2026, 11, 22, tzinfo=UTC)
