"""Retention: delete merged staging rows and raw archive objects older than ETL_RETENTION_DAYS.

``retention_job`` is a dry run unless told otherwise (``dry_run: false``): it then only counts what it would
delete. ``retention_schedule`` (stopped until turned on) runs it for real once a day. Staging rows still
waiting for their merge are never deleted; the ledger keeps every batch and marks what was pruned of it, the
reconciliation accepts events whose staged record retention deleted, and a replay of a pruned batch fails
with a clear message (see ``etl_assets.warehouse.retention``).
"""

import dagster as dg

from etl_assets.defs.retry_policies import OUTSIDE_RETRY_POLICY
from etl_assets.markdown import markdown_table
from etl_assets.resources import WAREHOUSE_POOL, ObjectStoreResource, WarehouseResource
from etl_assets.settings import PrivacySettings
from etl_assets.sources.archive import ArchivePruneFailed, prune_archive
from etl_assets.warehouse.retention import mark_archive_pruned, prune_staging, retention_cutoff


class RetentionConfig(dg.Config):
    dry_run: bool = True
    """Only count what would be deleted (the default: deleting is a choice)."""
    days: int | None = None
    """Keep this many days instead of ETL_RETENTION_DAYS (0 keeps only today)."""


@dg.op(
    pool=WAREHOUSE_POOL,
    retry_policy=OUTSIDE_RETRY_POLICY,
    description="Delete (or, in a dry run, count) the merged staging rows ingested and the raw archive objects "
    "archived before the retention cutoff; pending staging rows are never deleted. Reports what it did.",
)
def prune_expired_data(
    context: dg.OpExecutionContext,
    config: RetentionConfig,
    owner_warehouse: WarehouseResource,
    object_store: ObjectStoreResource,
    settings: dg.ResourceParam[PrivacySettings],
) -> None:
    days = settings.retention_days if config.days is None else config.days
    if days < 0:
        raise dg.Failure(f"days={days} is negative: give the number of days to keep (0 or more)", allow_retries=False)
    first_kept, cutoff = retention_cutoff(days)
    engine = owner_warehouse.get_engine()
    verb = "would delete" if config.dry_run else "deleted"
    staging = prune_staging(engine, cutoff, dry_run=config.dry_run)
    context.log.info(
        f"staging: {verb} {staging.rows} merged rows ingested before {first_kept} ({staging.batches} batches); "
        f"{staging.old_pending_kept} older rows still pending, kept"
    )
    marked = 0

    def mark(keys: list[str]) -> None:
        nonlocal marked
        marked += mark_archive_pruned(engine, keys)

    try:
        archive = prune_archive(
            object_store.client(),
            object_store.archive_bucket,
            first_kept,
            dry_run=config.dry_run,
            before_delete=mark,
        )
    except ArchivePruneFailed as error:
        raise dg.Failure(str(error)) from None
    context.log.info(
        f"archive: {verb} {archive.objects} objects ({archive.bytes} bytes) archived before {first_kept}; "
        f"{marked} batches marked pruned"
    )
    context.add_output_metadata(
        {
            "dry run": dg.MetadataValue.bool(config.dry_run),
            "days kept": dg.MetadataValue.int(days),
            "cutoff": dg.MetadataValue.text(f"{cutoff.isoformat()} (older than this goes)"),
            f"staging rows {verb}": dg.MetadataValue.int(staging.rows),
            "staging batches": dg.MetadataValue.int(staging.batches),
            "old pending rows kept": dg.MetadataValue.int(staging.old_pending_kept),
            f"archive objects {verb}": dg.MetadataValue.int(archive.objects),
            f"archive bytes {verb}": dg.MetadataValue.int(archive.bytes),
            "batches marked archive-pruned": dg.MetadataValue.int(marked),
            "staging rows by event day": dg.MetadataValue.md(
                markdown_table(("day", "rows"), sorted(staging.days.items())) if staging.days else "None."
            ),
        }
    )


@dg.job(
    description="Retention: delete merged staging rows and raw archive objects older than ETL_RETENTION_DAYS "
    "(config `days` overrides it). A dry run by default: set `dry_run: false` to delete. Rows still waiting for "
    "their merge are kept; pruned batches stay in the ledger, marked, and can no longer be replayed."
)
def retention_job() -> None:
    prune_expired_data()


retention_schedule = dg.ScheduleDefinition(
    name="retention_schedule",
    job=retention_job,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    run_config={"ops": {"prune_expired_data": {"config": {"dry_run": False}}}},
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Daily at 03:30 UTC: retention_job for real (dry_run false), keeping ETL_RETENTION_DAYS days.",
)
