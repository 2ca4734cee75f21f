"""When a range of days whose merge run failed is tried again.

``staged_days_sensor`` keys a run by the days' pending rows, and Dagster never requests a run key twice, so a
failed merge (the database away for longer than the retries ride out, a PII key missing until someone sets it)
would leave its days waiting for new data. Instead, the same pending rows are requested again after a growing
delay, a few times. A run a blocking check stopped is not: the same rows would fail the same check, and what
changes them (a fix in the source, a replay, a redrive) gives them a new key anyway.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import dagster as dg
from dagster._core.errors import DagsterAssetCheckFailedError
from dagster._core.storage.tags import WILL_RETRY_TAG

PENDING_KEY_TAG = "etl/pending_key"
"""Tags every run the sensor requests with the key of the pending rows it merges (without any retry suffix)."""

RETRY_DELAYS = (timedelta(minutes=10), timedelta(minutes=30), timedelta(hours=2))
"""After the 1st, 2nd and 3rd failed run of the same pending rows; after the 4th they wait for new data."""


@dataclass(frozen=True)
class PastRun:
    """A finished run of the same pending rows, as much of it as the decision needs."""

    status: str
    """``SUCCESS``, ``FAILURE`` or ``CANCELED``."""
    ended_at: float
    """POSIX seconds."""
    stopped_by_check: bool
    will_retry: bool
    """Dagster's run retry has it (a crashed run): its retry, not the sensor, runs the rows again."""


@dataclass(frozen=True)
class Decision:
    attempt: int | None
    """0 for the first run, n for the n-th retry; ``None``: not now."""
    reason: str = ""


def decide(past: Sequence[PastRun], now: float, delays: Sequence[timedelta] | None = None) -> Decision:
    """Whether to request the pending rows whose finished runs were ``past`` (oldest first) at ``now``, waiting
    ``delays`` (``RETRY_DELAYS`` unless given) after the 1st, 2nd, … failure."""
    delays = RETRY_DELAYS if delays is None else delays
    if not past:
        return Decision(0)
    latest = past[-1]
    if latest.status == "SUCCESS":
        return Decision(None, "its last run succeeded")
    if latest.status == "CANCELED":
        return Decision(None, "its last run was canceled: it waits for new data or a run by hand")
    if latest.will_retry:
        return Decision(None, "Dagster is retrying its last run")
    if latest.stopped_by_check:
        return Decision(None, "a blocking check stopped its last run: fix the data, then replay or redrive it")
    failures = sum(run.status == "FAILURE" for run in past)
    if failures > len(delays):
        return Decision(None, f"its runs failed {failures} times: it waits for new data or a run by hand")
    due = latest.ended_at + delays[failures - 1].total_seconds()
    if now < due:
        return Decision(None, f"its last run failed; tried again in {round(due - now)} s")
    return Decision(failures)


def run_key(pending_key: str, attempt: int) -> str:
    return pending_key if attempt == 0 else f"{pending_key}#retry-{attempt}"


FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


def past_runs(instance: dg.DagsterInstance, job_name: str, pending_key: str) -> list[PastRun]:
    """The finished runs of ``job_name`` tagged with ``pending_key``, oldest first.

    Whether a blocking check stopped a run is looked up (in its event log) for the latest run only: it is the only
    one ``decide`` asks about.
    """
    records = sorted(
        instance.get_run_records(
            filters=dg.RunsFilter(job_name=job_name, tags={PENDING_KEY_TAG: pending_key}, statuses=FINISHED)
        ),
        key=lambda record: record.create_timestamp,
    )
    return [
        PastRun(
            status=record.dagster_run.status.value,
            ended_at=record.end_time or record.update_timestamp.timestamp(),
            stopped_by_check=record is records[-1]
            and record.dagster_run.status == dg.DagsterRunStatus.FAILURE
            and _stopped_by_check(instance, record.dagster_run.run_id),
            will_retry=record.dagster_run.tags.get(WILL_RETRY_TAG) == "true",
        )
        for record in records
    ]


def _stopped_by_check(instance: dg.DagsterInstance, run_id: str) -> bool:
    failures = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    for record in failures:
        event = record.event_log_entry.dagster_event
        error = event.step_failure_data.error if event is not None and event.step_failure_data else None
        if error is not None and error.cls_name == DagsterAssetCheckFailedError.__name__:
            return True
    return False
