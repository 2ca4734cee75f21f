"""Which days a merge run takes: ranges of consecutive pending days, joined by the days with rebuild requests."""

from datetime import UTC, date, datetime

from etl_assets.orchestration.merge_runs import consecutive_ranges, with_requested
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
