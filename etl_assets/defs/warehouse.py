"""The warehouse: ``events``, one row per ``event_id``, partitioned by UTC day, merged from staging.

``staged_days_sensor`` watches staging for days with pending rows, and ``rebuild_requests`` for days a merge
changed beyond its own (a late identify re-attributes earlier days; a session runs past midnight), and requests
one run per range of consecutive days, covering ``events`` and the day's enrichment tables, so every day a file
touched (late events included) is merged and rebuilt.
"""

import hashlib
import time
from datetime import UTC, date, datetime

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from sqlalchemy import Engine

from etl_assets.defs.freshness import warehouse_freshness_policy
from etl_assets.defs.partitions import daily_partitions, single_run_backfill
from etl_assets.defs.pipeline_sensors import PIPELINE_SENSOR_STATUS
from etl_assets.orchestration import failed_days
from etl_assets.orchestration.materialization import write_figures
from etl_assets.orchestration.merge_runs import consecutive_ranges, days_in_flight, with_requested
from etl_assets.orchestration.partition_days import accepted_times, days_of
from etl_assets.orchestration.privacy import missing_key_failure
from etl_assets.orchestration.table_metadata import OWNERS, table_metadata
from etl_assets.resources import WAREHOUSE_POOL, WarehouseResource
from etl_assets.settings import PipelineSettings, pii_policy
from etl_assets.transform import TRANSFORM_VERSION
from etl_assets.transform.pii import PiiKeyMissing
from etl_assets.warehouse.holds import current_holds, describe_hold
from etl_assets.warehouse.merge import MergeCounts, MergeOptions, merge_days
from etl_assets.warehouse.rebuild import requested_days
from etl_assets.warehouse.schema import events as events_table
from etl_assets.warehouse.staging import PendingDay, pending_days


class EventsConfig(dg.Config):
    reprocess_all: bool = False
    """Run every staging row of the day through the transform again, not only the pending ones."""
    redrive_quarantined: bool = False
    """Also run the day's quarantined rows through the (fixed) transform again; those that pass now load."""
    merge_held_sources: bool = False
    """Also merge the rows of sources the staging gate holds back on the days, releasing them: their rows that
    the transform rejects go to quarantine (an operator's release of a source whose rows will not get better)."""


def merge_metadata(counts: MergeCounts, seconds: float) -> dict[str, dg.MetadataValue]:
    written = counts.inserted + counts.updated
    return {
        "rows written": dg.MetadataValue.int(written),
        **write_figures(written, seconds, errors=counts.rejected),
        "staged rows read": dg.MetadataValue.int(counts.received),
        "inserted": dg.MetadataValue.int(counts.inserted),
        "updated": dg.MetadataValue.int(counts.updated),
        "unchanged": dg.MetadataValue.int(counts.unchanged),
        "duplicates skipped": dg.MetadataValue.int(counts.duplicates + counts.superseded),
        "moved between days": dg.MetadataValue.int(counts.moved),
        "order lines written": dg.MetadataValue.int(counts.lines),
        "identity links refused": dg.MetadataValue.int(counts.links_refused),
        "events re-attributed to a person": dg.MetadataValue.int(counts.persons_moved),
        "rows transformed again": dg.MetadataValue.int(counts.refreshed),
        "rows quarantined": dg.MetadataValue.int(counts.rejected),
        "days touched": dg.MetadataValue.text(", ".join(day.isoformat() for day in sorted(counts.days)) or "none"),
    }


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
    pool=WAREHOUSE_POOL,
    code_version=TRANSFORM_VERSION,
    group_name="warehouse",
    owners=OWNERS,
    kinds={"postgres"},
    deps=["staging_events"],
    metadata=table_metadata(events_table),
    freshness_policy=warehouse_freshness_policy(),
    description="Normalized events, one row per event_id, partitioned by UTC day of occurred_at. Records are "
    "transformed once, at ingest; a day's merge is SQL alone, one transaction, and reads the staged rows no merge "
    "has read yet (batch_days), merging them by event_id: re-runs, replays and duplicates change nothing, a changed "
    "event updates its row, an event re-sent with another timestamp moves. Days merge in parallel; one merge of a "
    "day at a time. An order event's products become its rows of order_lines, written, replaced and moved with it. "
    "Each row gets its person_id from the identity graph (users, identity_links, group_memberships, fed by "
    "identify/alias/group calls and events with both ids); a late link moves earlier events to their person and "
    "requests their days' rebuild. Rows an older transform version made (or staged without the PII key) are "
    "transformed again first. The rows of a source the staging gate holds back on the day (staged_day_valid) stay "
    "pending. PII (ETL_PII_FIELDS) is pseudonymized with ETL_PII_KEY before normalizing: no column holds it in "
    "clear.",
)
def events(
    context: dg.AssetExecutionContext,
    config: EventsConfig,
    warehouse: WarehouseResource,
    settings: dg.ResourceParam[PipelineSettings],
) -> dg.MaterializeResult:
    options = MergeOptions(
        accepted=accepted_times(),
        pii=pii_policy(),
        reprocess_all=config.reprocess_all,
        redrive=config.redrive_quarantined,
        release_held=config.merge_held_sources,
    )
    started = time.perf_counter()
    try:
        counts = merge_days(
            warehouse.get_engine(),
            days_of(context.partition_time_window),
            options,
            at_once=settings.merge_days_at_once,
        )
    except PiiKeyMissing as error:
        raise missing_key_failure(error) from None
    return dg.MaterializeResult(metadata=merge_metadata(counts, time.perf_counter() - started))


STAGING_DAY_CHECKS = dg.AssetSelection.checks(
    dg.AssetCheckKey(dg.AssetKey("staging_events"), "staged_day_valid"),
    dg.AssetCheckKey(dg.AssetKey("staging_events"), "schema_drift"),
)

daily_events_job = dg.define_asset_job(
    "daily_events_job",
    selection=dg.AssetSelection.assets("events").downstream() | STAGING_DAY_CHECKS,
    partitions_def=daily_partitions,
    executor_def=dg.in_process_executor,
    description="Check a range of days' staged rows, merge them into events, check the days and rebuild their "
    "enrichment tables (one run for the range). The staging gate holds back only a bad source of a day (its rows "
    "stay pending; the other sources and days merge); a failed blocking check on events holds the days' "
    "enrichment back. "
    "Its steps run one after another in the run's process: they are SQL the database does, so a process per "
    "step would only add seconds of start-up to every near-real-time run.",
)


def _key(day: date) -> str:
    return day.isoformat()


def _fingerprint(run: list[PendingDay]) -> str:
    return hashlib.sha256("+".join(item.version for item in run).encode()).hexdigest()[:16]


@dg.sensor(
    job=daily_events_job,
    minimum_interval_seconds=10,
    default_status=PIPELINE_SENSOR_STATUS,
    description="Every 10 seconds, requests a run of events and its enrichment for each range of consecutive days (at "
    "most a week; today, where live events land, on its own) that has "
    "staging rows waiting or a rebuild requested (persons re-attributed by a late identify, a session across "
    "midnight) and no queued or running merge run covers: ranges merge in parallel (within the warehouse pool), "
    "a day's new rows wait for the run after the one under way. The run key names the days' pending rows and "
    "requests, so new or re-staged data runs again. A run that failed (not one a blocking check stopped) is requested "
    "again 10 min, 30 min and 2 h after its failures.",
)
def staged_days_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult | dg.SkipReason:
    busy = days_in_flight(context.instance, daily_events_job.name)
    requests = []
    waiting = []
    now = time.time()
    engine = warehouse.get_engine()
    every_pending = with_requested(pending_days(engine), requested_days(engine))
    pending = [item for item in every_pending if item.day not in busy]
    if every_pending and not pending:
        return dg.SkipReason(
            f"every pending day ({', '.join(_key(item.day) for item in every_pending)}) is still merging in a run "
            "under way; their new rows wait for the next tick"
        )
    for run in consecutive_ranges(pending, live_day=datetime.now(UTC).date()):
        days = f"{_key(run[0].day)}..{_key(run[-1].day)}"
        pending_key = f"{days}@{_fingerprint(run)}"
        decision = failed_days.decide(failed_days.past_runs(context.instance, daily_events_job.name, pending_key), now)
        if decision.attempt is None:
            waiting.append(f"{days}: {decision.reason}")
            continue
        requests.append(
            dg.RunRequest(
                run_key=failed_days.run_key(pending_key, decision.attempt),
                tags={
                    ASSET_PARTITION_RANGE_START_TAG: _key(run[0].day),
                    ASSET_PARTITION_RANGE_END_TAG: _key(run[-1].day),
                    "etl/pending_rows": str(sum(item.rows for item in run)),
                    failed_days.PENDING_KEY_TAG: pending_key,
                },
            )
        )
    if waiting:
        held_back = "pending days not requested now: " + "; ".join(waiting) + _holds_note(engine)
        context.log.info(held_back)
        if not requests:
            return dg.SkipReason(held_back)
    return dg.SensorResult(run_requests=requests)


def _holds_note(engine: Engine) -> str:
    """What the staging gate holds back: rows that stay pending until new rows of their day run again, or a
    re-drive releases them (not requested meanwhile: their last run succeeded)."""
    holds = current_holds(engine)
    if not holds:
        return ""
    return ". Held back by the staging gate (re-drive the day once fixed): " + "; ".join(map(describe_hold, holds))
