"""Ingest: landing files in S3 → the raw archive (``raw_payloads``) → ``staging_events``.

The S3 sensor requests one run per new object (run key ``key#etag``: the same bytes never run twice,
a re-upload with new bytes runs again). Each run archives the file with its checksum, then streams
it record by record into staging; records that cannot be read go to quarantine with the line number
and the reason, and a file that cannot be read at all becomes one quarantine row that says why (its run
succeeds). Only transient errors fail the step into its retry policy.
"""

import time

import dagster as dg

from etl_assets.defs.partitions import accepted_times
from etl_assets.defs.pipeline_sensors import PIPELINE_SENSOR_STATUS
from etl_assets.defs.retry_policies import OUTSIDE_RETRY_POLICY, retried_only_if_transient
from etl_assets.defs.table_metadata import OWNERS, table_metadata
from etl_assets.resources import ObjectStoreResource, WarehouseResource
from etl_assets.settings import Settings
from etl_assets.sources.landing import LandingCursor, LandingObject, plan_landing_tick
from etl_assets.sources.landing_ingest import ingest_landing_object
from etl_assets.warehouse.schema import raw_batches, staging_events
from etl_assets.warehouse.staging import known_batch_ids


class LandingFileConfig(dg.Config):
    key: str
    etag: str
    size: int = 0


@dg.multi_asset(
    name="ingest_landing_file",
    pool="warehouse",
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
):
    obj = LandingObject(key=config.key, etag=config.etag, size=config.size)
    with retried_only_if_transient():
        result = ingest_landing_object(
            object_store.client(),
            ingest_warehouse.get_engine(),
            obj,
            landing_bucket=object_store.landing_bucket,
            archive_bucket=object_store.archive_bucket,
            accepted=accepted_times(),
            array_keys=Settings.from_env().json_array_keys,
        )
    counts = result.counts
    context.log.info(
        f"{config.key}: {counts.records} records, {counts.staged} staged, {counts.quarantined} quarantined, "
        f"days {', '.join(day.isoformat() for day in counts.days_touched) or 'none'}",
        extra={"batch_id": result.batch_id, "source": "s3", "rows": counts.staged},
    )
    yield dg.MaterializeResult(
        asset_key="raw_payloads",
        metadata={
            "batch id": dg.MetadataValue.text(result.batch_id),
            "archive key": dg.MetadataValue.text(result.archive_key or "none: the file could not be read"),
            "sha256": dg.MetadataValue.text(result.sha256 or "none"),
            "bytes": dg.MetadataValue.int(result.byte_count),
            "newly archived": dg.MetadataValue.bool(result.newly_archived),
        },
    )
    yield dg.MaterializeResult(
        asset_key="staging_events",
        metadata={
            "batch id": dg.MetadataValue.text(result.batch_id),
            "records": dg.MetadataValue.int(counts.records),
            "rows written": dg.MetadataValue.int(counts.staged),
            "rows already staged": dg.MetadataValue.int(counts.already_staged),
            "rows quarantined": dg.MetadataValue.int(counts.quarantined),
            "batches": dg.MetadataValue.int(1),
            "errors": dg.MetadataValue.int(counts.quarantined),
            "succeeded at": dg.MetadataValue.timestamp(time.time()),
            "rows per second": dg.MetadataValue.float(round(counts.records / result.seconds, 1)),
            "seconds": dg.MetadataValue.float(round(result.seconds, 3)),
            "bytes": dg.MetadataValue.int(result.byte_count),
            "days touched": dg.MetadataValue.text(", ".join(day.isoformat() for day in counts.days_touched) or "none"),
        },
    )


ingest_landing_file_job = dg.define_asset_job(
    "ingest_landing_file_job",
    selection=dg.AssetSelection.assets("raw_payloads", "staging_events").without_checks(),
    description="Archive one landing file and stage its records (started by landing_files_sensor).",
)


@dg.sensor(
    job=ingest_landing_file_job,
    minimum_interval_seconds=30,
    default_status=PIPELINE_SENSOR_STATUS,
    description="Every 30 seconds, requests an ingest run (ingest_landing_file_job) for each new file under the "
    "landing prefix of the landing bucket. Lists only keys after "
    "its cursor (StartAfter), at most ETL_SENSOR_MAX_RUNS runs a tick, and sweeps the whole prefix every "
    "ETL_LANDING_SWEEP_MINUTES for re-uploaded files.",
)
def landing_files_sensor(
    context: dg.SensorEvaluationContext, object_store: ObjectStoreResource, ingest_warehouse: WarehouseResource
) -> dg.SensorResult:
    settings = Settings.from_env()
    engine = ingest_warehouse.get_engine()

    def unknown(objects: list[LandingObject]) -> list[LandingObject]:
        known = known_batch_ids(engine, [obj.batch_id for obj in objects])
        return [obj for obj in objects if obj.batch_id not in known]

    objects, cursor = plan_landing_tick(
        object_store.client(),
        object_store.landing_bucket,
        object_store.landing_prefix,
        LandingCursor.from_json(context.cursor),
        cap=settings.sensor_max_runs,
        now=time.time(),
        sweep_every_seconds=settings.landing_sweep_minutes * 60,
        unknown_batches=unknown,
    )
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=obj.batch_id,
                run_config={
                    "ops": {"ingest_landing_file": {"config": {"key": obj.key, "etag": obj.etag, "size": obj.size}}}
                },
                tags={"etl/landing_key": obj.key},
            )
            for obj in objects
        ],
        cursor=cursor.to_json(),
    )
