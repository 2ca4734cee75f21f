"""Which days ``staged_days_sensor`` puts into a merge run: the pending days joined by the days with rebuild
requests, as ranges of consecutive days, leaving out the days of merge runs already queued or under way."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from etl_assets.orchestration.run_status import IN_FLIGHT
from etl_assets.warehouse.rebuild import RequestedDay
from etl_assets.warehouse.staging import PendingDay

DAYS_PER_SENSOR_RUN = 7
"""The most days ``staged_days_sensor`` puts into one run: a backlog becomes runs of a week that merge in parallel."""


def consecutive_ranges(
    days: list[PendingDay], *, live_day: date | None = None, max_days: int = DAYS_PER_SENSOR_RUN
) -> list[list[PendingDay]]:
    """The pending days as runs of consecutive days, at most ``max_days`` a run; ``live_day`` (today, where live
    events land) runs on its own, so its events never wait behind a backlog of older days merging."""
    ranges: list[list[PendingDay]] = []
    for pending in sorted(days, key=lambda item: item.day):
        joins = (
            ranges
            and pending.day - ranges[-1][-1].day == timedelta(days=1)
            and len(ranges[-1]) < max_days
            and live_day not in (pending.day, ranges[-1][-1].day)
        )
        if joins:
            ranges[-1].append(pending)
        else:
            ranges.append([pending])
    return ranges


def with_requested(pending: list[PendingDay], requested: list[RequestedDay]) -> list[PendingDay]:
    """The pending days and the days with rebuild requests, one entry a day; a new request changes its version."""
    days = {item.day: item for item in pending}
    for request in requested:
        known = days.get(request.day)
        if known is None:
            days[request.day] = PendingDay(request.day, 0, 0, request.requested_at)
        elif request.requested_at > known.last_staged_at:
            days[request.day] = PendingDay(known.day, known.rows, known.staged_rows, request.requested_at)
    return sorted(days.values(), key=lambda item: item.day)


def days_in_flight(instance: dg.DagsterInstance, job_name: str) -> set[date]:
    """The days of the runs of ``job_name`` queued or under way: their new rows wait for the run after."""
    days: set[date] = set()
    for run in instance.get_runs(filters=dg.RunsFilter(job_name=job_name, statuses=IN_FLIGHT)):
        start, end = run.tags.get(ASSET_PARTITION_RANGE_START_TAG), run.tags.get(ASSET_PARTITION_RANGE_END_TAG)
        if start is None or end is None:
            partition = run.tags.get(PARTITION_NAME_TAG)
            start = end = partition
        if start is None or end is None:
            continue
        first, last = date.fromisoformat(start), date.fromisoformat(end)
        days.update(first + timedelta(days=offset) for offset in range((last - first).days + 1))
    return days
