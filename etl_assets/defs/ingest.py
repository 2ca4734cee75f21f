"""Ingest: landing files in S3 → the raw archive (``raw_payloads``) → ``staging_events``.

The S3 sensor puts new objects into runs: up to ETL_LANDING_RUN_MAX_FILES files and ETL_LANDING_RUN_MAX_BYTES bytes
a run, a file of more than half that size in a run of its own (``group_into_runs``). A run's key names its objects
(``key#etag`` for one file, a digest of the sorted ``key#etag`` list for several): the same bytes are never asked for
twice, a re-upload with new bytes runs again. Each file of a run is a batch of its own: archived with its checksum,
then streamed record by record into staging; records that cannot be read go to quarantine with the line number and
the reason, and a file that cannot be read at all becomes one quarantine row that says why. A run fetches a few files at
a time and stages them in its order, the small ones that are ready several to a transaction; a file that fails does not
stop the others: the step fails at the end, naming the files, and its retry skips the files already staged.
"""

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg
from pydantic import ValidationError

from etl_assets.defs.pipeline_sensors import PIPELINE_SENSOR_STATUS
from etl_assets.defs.retry_policies import OUTSIDE_RETRY_POLICY
from etl_assets.orchestration.materialization import write_figures
from etl_assets.orchestration.partition_days import accepted_times
from etl_assets.orchestration.step_failures import TransientFailure
from etl_assets.orchestration.table_metadata import OWNERS, table_metadata
from etl_assets.resources import WAREHOUSE_POOL, ObjectStoreResource, WarehouseResource
from etl_assets.settings import PipelineSettings
from etl_assets.sources.landing import LandingCursor, LandingObject, RunLimits, plan_landing_tick, run_key
from etl_assets.sources.landing_ingest import FileOutcome, IngestedFile, Reading, ingest_landing_objects
from etl_assets.sources.outside_errors import OutsideFailure, sort_error
from etl_assets.warehouse.schema import raw_batches, staging_events
from etl_assets.warehouse.staging import known_batch_ids


class LandingFile(dg.Config):
    key: str
    etag: str
    size: int = 0


class LandingFileConfig(dg.Config):
    """The landing objects of one run: ``files`` (what the sensor asks for), or one file by ``key`` and ``etag``."""

    files: list[LandingFile] = []
    key: str | None = None
    etag: str | None = None
    size: int = 0

    def objects(self) -> list[LandingObject]:
        one = [LandingObject(self.key, self.etag, self.size)] if self.key is not None and self.etag is not None else []
        many = [LandingObject(file.key, file.etag, file.size) for file in self.files]
        if (self.key is None) != (self.etag is None) or bool(one) == bool(many):
            raise dg.Failure(
                description="the run names no landing file, or names them twice: give either `files` (a list of "
                "{key, etag, size}) or one file's `key` and `etag` (the ETag without quotes, from the object's page)",
                allow_retries=False,
            )
        return one or many


FILE_TABLE_LIMIT = 50
"""Runs of up to this many files list each file in their materialization's metadata; larger ones give totals."""
FAILED_IN_A_ROW_LIMIT = 3
"""After this many files in a row fail, the rest of the run is not tried: the store or the database is down, not the
files (the step's retry runs them)."""
FILES_AT_ONCE = 8
"""Files of a run fetched at the same time (downloaded, archived, a small one read), each in a thread: a small file's
time is mostly waiting on the store's two requests, which overlap (eight loaded 1,000 small files about 8% faster than
four). The step's own thread stages them in the run's order with one warehouse connection; the fetching threads need
one only to quarantine a file they cannot read, so they are one fewer than the pool's connections (ETL_DB_POOL_SIZE +
ETL_DB_MAX_OVERFLOW) when it has fewer than nine."""


@dataclass(frozen=True)
class FailedFile:
    key: str
    failure: OutsideFailure


def _ingest_each(
    context: dg.AssetExecutionContext, outcomes: Iterable[FileOutcome]
) -> tuple[list[IngestedFile], list[FailedFile], int]:
    """Log what became of each file of the run: what each became, the files that failed, and how many were not
    tried (after ``FAILED_IN_A_ROW_LIMIT`` failures in a row)."""
    ingested: list[IngestedFile] = []
    failed: list[FailedFile] = []
    untried = 0
    for outcome in outcomes:
        obj = outcome.obj
        if outcome.error is not None:
            failure = sort_error(outcome.error)
            context.log.error(f"{obj.key}: {failure.message}", extra={"batch_id": obj.batch_id, "source": "s3"})
            failed.append(FailedFile(obj.key, failure))
        elif outcome.ingested is None:
            untried += 1
        else:
            ingested.append(outcome.ingested)
            counts = outcome.ingested.counts
            context.log.info(
                f"{obj.key}: {counts.records} records, {counts.staged} staged, {counts.quarantined} quarantined, "
                f"days {', '.join(day.isoformat() for day in counts.days_touched) or 'none'}",
                extra={"batch_id": obj.batch_id, "source": "s3", "rows": counts.staged},
            )
    return ingested, failed, untried


def _failure(failed: list[FailedFile], untried: int, total: int) -> Exception:
    """The step's failure: the first file's message (what to do) and which files failed; retried when any failure
    may go away (a retry skips the files already staged), at once and for good when each would fail the same way."""
    message = failed[0].failure.message
    if total > 1:
        names = ", ".join(file.key for file in failed[:10]) + (", …" if len(failed) > 10 else "")
        message += f" ({len(failed)} of {total} files failed: {names}"
        message += f"; {untried} not tried" if untried else ""
        message += "; the others are staged and a retry skips them)"
    if any(file.failure.transient for file in failed):
        return TransientFailure(message)
    return dg.Failure(description=message, allow_retries=False)


def _file_table(ingested: list[IngestedFile], keys: dict[str, str]) -> dg.TableMetadataValue:
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord(
                {
                    "file": keys[result.batch_id],
                    "records": result.counts.records,
                    "staged": result.counts.staged + result.counts.already_staged,
                    "quarantined": result.counts.quarantined,
                    "bytes": result.byte_count,
                }
            )
            for result in ingested
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("file", "string"),
                dg.TableColumn("records", "int"),
                dg.TableColumn("staged", "int"),
                dg.TableColumn("quarantined", "int"),
                dg.TableColumn("bytes", "int"),
            ]
        ),
    )


@dg.multi_asset(
    name="ingest_landing_file",
    pool=WAREHOUSE_POOL,
    retry_policy=OUTSIDE_RETRY_POLICY,
    specs=[
        dg.AssetSpec(
            "raw_payloads",
            description="Everything that entered, byte for byte as it arrived: each landing file, events API "
            "page and collector request is one batch, stored unchanged in the raw archive bucket "
            "(raw/source=<source>/ingest_date=<day>/) and entered in the raw_batches ledger with its SHA-256 before "
            "anything reads it. Replays (replay_job) start from here; its checks say whether every batch was "
            "staged whole and whether every source still sends.",
            group_name="ingest",
            owners=OWNERS,
            kinds={"s3"},
            metadata=table_metadata(raw_batches),
        ),
        dg.AssetSpec(
            "staging_events",
            deps=["raw_payloads"],
            description="One row per record of every batch (file line, API record, webhook or tracking event), "
            "as received, written with COPY and waiting (status pending) until its day is merged into events. "
            "Unreadable records (broken JSON, wrong CSV column count, invalid UTF-8, NUL bytes, no id or timestamp) "
            "go to quarantine with the line and the reason instead.",
            group_name="ingest",
            owners=OWNERS,
            kinds={"postgres"},
            metadata=table_metadata(staging_events),
        ),
    ],
)
def ingest_landing_file(
    context: dg.AssetExecutionContext,
    config: LandingFileConfig,
    object_store: ObjectStoreResource,
    ingest_warehouse: WarehouseResource,
    settings: dg.ResourceParam[PipelineSettings],
):
    """Each file of the run as a batch of its own (``ingest_landing_objects``: a few fetched at a time, staged in the
    run's order); a file that fails does not stop the others, and the step fails at the end naming it."""
    objects = config.objects()
    engine = ingest_warehouse.get_engine()
    started = time.perf_counter()
    connections = ingest_warehouse.pool_size + ingest_warehouse.max_overflow
    outcomes = ingest_landing_objects(
        object_store.client(),
        engine,
        objects,
        landing_bucket=object_store.landing_bucket,
        archive_bucket=object_store.archive_bucket,
        reading=Reading(accepted_times(), settings.json_array_keys),
        at_once=max(1, min(FILES_AT_ONCE, connections - 1)),
        give_up_after=FAILED_IN_A_ROW_LIMIT,
    )
    ingested, failed, untried = _ingest_each(context, outcomes)
    if failed:
        raise _failure(failed, untried, len(objects))
    seconds = time.perf_counter() - started
    records = sum(result.counts.records for result in ingested)
    byte_count = sum(result.byte_count for result in ingested)
    days = sorted({day for result in ingested for day in result.counts.days_touched})
    quarantined = sum(result.counts.quarantined for result in ingested)
    one = {"batch id": dg.MetadataValue.text(ingested[0].batch_id)} if len(ingested) == 1 else {}
    table = (
        {"files loaded": _file_table(ingested, {obj.batch_id: obj.key for obj in objects})}
        if 1 < len(ingested) <= FILE_TABLE_LIMIT
        else {}
    )
    archived = (
        {
            "archive key": dg.MetadataValue.text(ingested[0].archive_key or "none: the file could not be read"),
            "sha256": dg.MetadataValue.text(ingested[0].sha256 or "none"),
        }
        if len(ingested) == 1
        else {}
    )
    yield dg.MaterializeResult(
        asset_key="raw_payloads",
        metadata={
            **one,
            **archived,
            "files": dg.MetadataValue.int(len(ingested)),
            "bytes": dg.MetadataValue.int(byte_count),
            "newly archived": dg.MetadataValue.int(sum(result.newly_archived for result in ingested)),
            "not readable": dg.MetadataValue.int(sum(result.archive_key is None for result in ingested)),
        },
    )
    yield dg.MaterializeResult(
        asset_key="staging_events",
        metadata={
            **one,
            "files": dg.MetadataValue.int(len(ingested)),
            "records": dg.MetadataValue.int(records),
            "rows written": dg.MetadataValue.int(sum(result.counts.staged for result in ingested)),
            "rows already staged": dg.MetadataValue.int(sum(result.counts.already_staged for result in ingested)),
            "records already in events": dg.MetadataValue.int(sum(result.counts.resent for result in ingested)),
            "rows quarantined": dg.MetadataValue.int(quarantined),
            "batches": dg.MetadataValue.int(len(ingested)),
            **write_figures(records, seconds, errors=quarantined),
            "bytes": dg.MetadataValue.int(byte_count),
            "days touched": dg.MetadataValue.text(", ".join(day.isoformat() for day in days) or "none"),
            **table,
        },
    )


ingest_landing_file_job = dg.define_asset_job(
    "ingest_landing_file_job",
    selection=dg.AssetSelection.assets("raw_payloads", "staging_events").without_checks(),
    description="Archive landing files and stage their records, each file a batch of its own (started by "
    "landing_files_sensor, up to ETL_LANDING_RUN_MAX_FILES files a run).",
)
NOT_SUCCEEDED = [status for status in dg.DagsterRunStatus if status != dg.DagsterRunStatus.SUCCESS]


def requested_objects(run_config: Mapping[str, Any]) -> list[LandingObject]:
    """The landing objects a run of ``ingest_landing_file_job`` was asked to ingest (from its run config)."""
    config = run_config.get("ops", {}).get("ingest_landing_file", {}).get("config", {})
    try:
        return LandingFileConfig(**config).objects()
    except (dg.Failure, ValidationError, TypeError):
        return []  # a run launched with a config that names no file ingested nothing


def _asked_for_already(instance: dg.DagsterInstance) -> set[str]:
    """Batch ids named by ingest runs that have not succeeded (queued, running, failed, canceled): the sweep does
    not ask for them again (an operator re-executes a failed run); a successful run's files are in the ledger."""
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=ingest_landing_file_job.name, statuses=NOT_SUCCEEDED))
    return {obj.batch_id for run in runs for obj in requested_objects(run.run_config)}


def run_request(objects: list[LandingObject]) -> dg.RunRequest:
    files = [{"key": obj.key, "etag": obj.etag, "size": obj.size} for obj in objects]
    one = {"etl/landing_key": objects[0].key} if len(objects) == 1 else {}
    return dg.RunRequest(
        run_key=run_key(objects),
        run_config={"ops": {"ingest_landing_file": {"config": {"files": files}}}},
        tags={**one, "etl/landing_files": str(len(objects)), "etl/landing_bytes": str(sum(o.size for o in objects))},
    )


@dg.sensor(
    job=ingest_landing_file_job,
    minimum_interval_seconds=30,
    default_status=PIPELINE_SENSOR_STATUS,
    description="Every 30 seconds, requests ingest runs (ingest_landing_file_job) for the new files under the "
    "landing prefix of the landing bucket: up to ETL_LANDING_RUN_MAX_FILES files and ETL_LANDING_RUN_MAX_BYTES "
    "bytes a run, a large file alone, at most ETL_SENSOR_MAX_RUNS runs a tick. Lists only keys after its cursor "
    "(StartAfter), and sweeps the whole prefix every ETL_LANDING_SWEEP_MINUTES for re-uploaded files.",
)
def landing_files_sensor(
    context: dg.SensorEvaluationContext,
    object_store: ObjectStoreResource,
    ingest_warehouse: WarehouseResource,
    settings: dg.ResourceParam[PipelineSettings],
) -> dg.SensorResult:
    engine = ingest_warehouse.get_engine()

    def unknown(objects: list[LandingObject]) -> list[LandingObject]:
        known = known_batch_ids(engine, [obj.batch_id for obj in objects])
        unknown = [obj for obj in objects if obj.batch_id not in known]
        if not unknown:
            return []
        asked = _asked_for_already(context.instance)
        return [obj for obj in unknown if obj.batch_id not in asked]

    runs, cursor = plan_landing_tick(
        object_store.client(),
        object_store.landing_bucket,
        object_store.landing_prefix,
        LandingCursor.from_json(context.cursor),
        limits=RunLimits(settings.sensor_max_runs, settings.landing_run_max_files, settings.landing_run_max_bytes),
        now=time.time(),
        sweep_every_seconds=settings.landing_sweep_minutes * 60,
        unknown_batches=unknown,
    )
    return dg.SensorResult(run_requests=[run_request(objects) for objects in runs], cursor=cursor.to_json())
