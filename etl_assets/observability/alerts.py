"""What an alert says: the failed asset checks and failed runs in Dagster's event log, read from a cursor and
made into ``Alert`` values."""

import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal
from urllib.parse import quote

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
    WILL_RETRY_TAG,
)
from dagster_shared.error import SerializableErrorInfo

from etl_assets.observability.alert_message import ERROR_MAX_CHARS, Alert, truncate
from etl_assets.settings import Settings

MAX_EVENTS_PER_TICK = 50
MAX_ASSETS_NAMED = 10

AlertKind = Literal["check", "run"]


@dataclass
class AlertCursor:
    """Where the alert sensor has read the event log up to, per kind of event (storage ids)."""

    check_storage_id: int = 0
    run_storage_id: int = 0
    unconfigured_noted: bool = False

    @classmethod
    def parse(cls, raw: str) -> "AlertCursor":
        return cls(**json.loads(raw))

    def serialize(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def check_evaluations(
    instance: dg.DagsterInstance, after_storage_id: int | None, limit: int, ascending: bool = True
) -> Sequence[dg.EventLogRecord]:
    records_filter = dg.EventRecordsFilter(dg.DagsterEventType.ASSET_CHECK_EVALUATION, after_cursor=after_storage_id)
    with warnings.catch_warnings():
        # No fetch_* method reads check evaluations across assets; get_event_records does, and warns
        # that it is deprecated (for Dagster 2.0) on every call.
        warnings.simplefilter("ignore", DeprecationWarning)
        return instance.get_event_records(records_filter, limit=limit, ascending=ascending)


def run_failures(
    instance: dg.DagsterInstance, after_storage_id: int | None, limit: int, ascending: bool = True
) -> Sequence[dg.EventLogRecord]:
    records_filter = dg.RunStatusChangeRecordsFilter(
        dg.DagsterEventType.RUN_FAILURE, after_storage_id=after_storage_id or None
    )
    return instance.fetch_run_status_changes(records_filter, limit=limit, ascending=ascending).records


def latest_cursor(instance: dg.DagsterInstance, unconfigured_noted: bool) -> AlertCursor:
    """A cursor at the newest event of each kind: what a tick starting "now" has already seen."""
    latest_check = check_evaluations(instance, None, limit=1, ascending=False)
    latest_run = run_failures(instance, None, limit=1, ascending=False)
    return AlertCursor(
        check_storage_id=latest_check[0].storage_id if latest_check else 0,
        run_storage_id=latest_run[0].storage_id if latest_run else 0,
        unconfigured_noted=unconfigured_noted,
    )


def _run_partition(run: dg.DagsterRun | None) -> str | None:
    if run is None:
        return None
    if PARTITION_NAME_TAG in run.tags:
        return run.tags[PARTITION_NAME_TAG]
    start, end = run.tags.get(ASSET_PARTITION_RANGE_START_TAG), run.tags.get(ASSET_PARTITION_RANGE_END_TAG)
    if start and end:
        return start if start == end else f"{start}…{end}"
    return None


def _asset_link(base_url: str, asset_key: dg.AssetKey) -> str:
    path = "/".join(quote(part, safe="") for part in asset_key.path)
    return f"{base_url}/assets/{path}?view=checks"


def check_alert(instance: dg.DagsterInstance, record: dg.EventLogRecord, settings: Settings) -> Alert | None:
    """The alert for a check evaluation, or None when it passed."""
    entry = record.event_log_entry
    evaluation = entry.get_dagster_event().asset_check_evaluation_data
    if evaluation.passed:
        return None
    run = instance.get_run_by_id(entry.run_id) if entry.run_id else None
    asset = evaluation.asset_key.to_user_string()
    severity = evaluation.severity.value
    counts = {
        label: value.value
        for label, value in evaluation.metadata.items()
        if isinstance(value, dg.IntMetadataValue | dg.FloatMetadataValue) and value.value is not None
    }
    return Alert(
        kind="check",
        title=f"{severity}: check {evaluation.check_name} failed on {asset}",
        link=_asset_link(settings.ui_base_url, evaluation.asset_key),
        run_id=entry.run_id or None,
        job_name=entry.job_name,
        asset=asset,
        partition=evaluation.partition or _run_partition(run),
        check_name=evaluation.check_name,
        severity=severity,
        counts=counts,
        description=evaluation.description,
    )


def _innermost_message(error: SerializableErrorInfo) -> str:
    # A step's error wraps the user's exception ("Error occurred while executing op …") as its cause.
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


def _run_failure_error(entry: dg.EventLogEntry) -> str:
    failure = entry.get_dagster_event().job_failure_data
    step_event = failure.first_step_failure_event if failure else None
    if step_event is not None and step_event.step_failure_data.error is not None:
        return f"{step_event.step_key}: {_innermost_message(step_event.step_failure_data.error)}"
    if failure is not None and failure.error is not None:
        return _innermost_message(failure.error)
    return entry.message


def _run_assets(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[str]:
    """The assets the run was to materialize: its selection, or (a run of a whole asset job) what it planned."""
    keys = set(run.asset_selection or ())
    if not keys:
        planned = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, limit=MAX_ASSETS_NAMED + 1
        ).records
        keys = {key for record in planned if (key := record.event_log_entry.get_dagster_event().asset_key)}
    names = sorted(key.to_user_string() for key in keys)
    return names if len(names) <= MAX_ASSETS_NAMED else [*names[:MAX_ASSETS_NAMED], "…"]


def run_alert(instance: dg.DagsterInstance, record: dg.EventLogRecord, settings: Settings) -> Alert:
    entry = record.event_log_entry
    run = instance.get_run_by_id(entry.run_id)
    job_name = entry.job_name or (run.job_name if run else None) or "a job"
    assets = _run_assets(instance, run) if run else []
    will_retry = run is not None and run.tags.get(WILL_RETRY_TAG) == "true"
    return Alert(
        kind="run",
        title=f"Run of {job_name} failed" + (" (it will be retried)" if will_retry else ""),
        link=f"{settings.ui_base_url}/runs/{entry.run_id}",
        run_id=entry.run_id,
        job_name=job_name,
        asset=truncate(", ".join(assets), 300) if assets else None,
        partition=_run_partition(run),
        error=truncate(_run_failure_error(entry), ERROR_MAX_CHARS),
    )


def pending_events(cursor: AlertCursor, instance: dg.DagsterInstance) -> list[tuple[AlertKind, dg.EventLogRecord]]:
    """The next events to handle, oldest first, at most MAX_EVENTS_PER_TICK."""
    checks = check_evaluations(instance, cursor.check_storage_id, MAX_EVENTS_PER_TICK)
    runs = run_failures(instance, cursor.run_storage_id, MAX_EVENTS_PER_TICK)
    pending: list[tuple[AlertKind, dg.EventLogRecord]] = [("check", r) for r in checks] + [("run", r) for r in runs]
    # Each kind's records stay a prefix of what follows its cursor, so moving each cursor is safe.
    return sorted(pending, key=lambda item: item[1].storage_id)[:MAX_EVENTS_PER_TICK]
