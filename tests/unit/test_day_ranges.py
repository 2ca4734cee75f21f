"""Pure pieces of the daily layer: which days a partition run covers, which timestamps are accepted."""

from datetime import UTC, date, datetime

import dagster as dg

from etl_assets.defs.partitions import accepted_times, days_of
from etl_assets.defs.warehouse import consecutive_ranges, with_requested
from etl_assets.warehouse.rebuild import RequestedDay
from etl_assets.warehouse.staging import PendingDay

STAGED = datetime(2025, 8, 10, tzinfo=UTC)


def pending(*days: date) -> list[PendingDay]:
    return [PendingDay(day, 1, number, STAGED) for number, day in enumerate(days)]


def test_pending_days_group_into_runs_of_consecutive_days():
    ranges = consecutive_ranges(pending(date(2025, 8, 3), date(2025, 8, 1), date(2025, 8, 2), date(2025, 8, 7)))
    assert [[item.day.day for item in run] for run in ranges] == [[1, 2, 3], [7]]
    assert consecutive_ranges([]) == []


def test_today_runs_on_its_own_and_a_long_backlog_splits_into_weeks():
    days = pending(*(date(2025, 8, 1 + offset) for offset in range(17)))
    ranges = consecutive_ranges(days, live_day=date(2025, 8, 12), max_days=7)
    assert [[item.day.day for item in run] for run in ranges] == [
        [1, 2, 3, 4, 5, 6, 7],
        [8, 9, 10, 11],
        [12],
        [13, 14, 15, 16, 17],
    ]


def test_a_pending_day_changes_version_with_new_or_restaged_rows():
    base = PendingDay(date(2025, 8, 1), 10, 100, STAGED)
    assert PendingDay(date(2025, 8, 1), 11, 101, STAGED).version != base.version
    assert PendingDay(date(2025, 8, 1), 10, 100, datetime(2025, 8, 11, tzinfo=UTC)).version != base.version
    assert PendingDay(date(2025, 8, 1), 10, 100, STAGED).version == base.version


def test_days_with_rebuild_requests_join_the_pending_days_and_a_newer_request_changes_the_version():
    later = datetime(2025, 8, 11, tzinfo=UTC)
    requested = [RequestedDay(date(2025, 8, 2), STAGED), RequestedDay(date(2025, 8, 5), later)]
    days = with_requested(pending(date(2025, 8, 1), date(2025, 8, 5)), requested)
    assert [(item.day.day, item.rows) for item in days] == [(1, 1), (2, 0), (5, 1)]
    assert [[item.day.day for item in run] for run in consecutive_ranges(days)] == [[1, 2], [5]]
    assert days[2].version != pending(date(2025, 8, 1), date(2025, 8, 5))[1].version
    assert with_requested(pending(date(2025, 8, 5)), [RequestedDay(date(2025, 8, 5), STAGED)]) == pending(
        date(2025, 8, 5)
    )


def test_a_partition_window_covers_its_days():
    window = dg.TimeWindow(datetime(2025, 8, 1, tzinfo=UTC), datetime(2025, 8, 4, tzinfo=UTC))
    assert days_of(window) == [date(2025, 8, 1), date(2025, 8, 2), date(2025, 8, 3)]


def test_accepted_times_run_from_the_first_day_through_the_end_of_today():
    accepted = accepted_times(datetime(2026, 11, 21, 23, 59, tzinfo=UTC), first_day=date(2025, 1, 1))
    assert accepted.earliest == datetime(2025, 1, 1, tzinfo=UTC)
    assert accepted.latest == datetime(2026, 11, 22, tzinfo=UTC)
