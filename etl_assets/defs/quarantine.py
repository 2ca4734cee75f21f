"""Quarantine as an asset of its own, and the job that re-drives it after a fix to the transform.

Records land in quarantine at two stages: ``parse`` (never staged: unreadable, no id or timestamp)
and ``normalize`` (staged, then rejected by the transform). A re-drive of a day runs the day's
rejected staging rows through the current transform again inside the ordinary merge, so a record
that now passes loads once (the merge is by event_id) and its quarantine row is marked resolved; one
that still fails stays, with its new reason. Parse-stage records are re-driven by replaying their
batch from the raw archive (``replay_job``).
"""

import dagster as dg

from etl_assets.defs.partitions import daily_partitions
from etl_assets.defs.warehouse import STAGING_DAY_CHECKS
from etl_assets.markdown import markdown_table
from etl_assets.orchestration.table_metadata import OWNERS, table_metadata
from etl_assets.resources import WAREHOUSE_POOL, WarehouseResource
from etl_assets.warehouse.quarantine import summarize_quarantine
from etl_assets.warehouse.schema import quarantine as quarantine_table


@dg.asset(
    name="quarantine",
    pool=WAREHOUSE_POOL,
    deps=["staging_events", "events"],
    group_name="quality",
    owners=OWNERS,
    kinds={"postgres"},
    metadata=table_metadata(quarantine_table),
    description="Every record that could not be loaded, with the reason, source, batch, line and the raw "
    "record as received. Materializing it reports what it holds: unresolved rows by reason and source, and "
    "the days a re-drive (redrive_quarantine_job) would retry.",
)
def quarantine_asset(warehouse: WarehouseResource) -> dg.MaterializeResult:
    summary = summarize_quarantine(warehouse.get_engine())
    return dg.MaterializeResult(
        metadata={
            "unresolved rows": dg.MetadataValue.int(summary.unresolved),
            "resolved rows": dg.MetadataValue.int(summary.resolved),
            "by reason": dg.MetadataValue.md(
                markdown_table(("stage", "reason", "rows"), summary.by_reason) if summary.by_reason else "Empty."
            ),
            "by source": dg.MetadataValue.md(
                markdown_table(("source", "rows"), summary.by_source) if summary.by_source else "Empty."
            ),
            "days to re-drive": dg.MetadataValue.text(
                ", ".join(day.isoformat() for day in summary.redrivable_days) or "none"
            ),
        }
    )


redrive_quarantine_job = dg.define_asset_job(
    "redrive_quarantine_job",
    selection=dg.AssetSelection.assets("events").downstream() | STAGING_DAY_CHECKS,
    partitions_def=daily_partitions,
    executor_def=dg.in_process_executor,
    config={"ops": {"events": {"config": {"redrive_quarantined": True, "merge_held_sources": False}}}},
    description="After a fix to the transform: run the chosen days' quarantined rows through it again. Rows that "
    "pass now merge into events (once, by event_id) and leave quarantine; the days' enrichment is rebuilt. The "
    "staging gate judges the days' sources again first: a held-back source that now passes is released and "
    "merges. With merge_held_sources: true (in the events op's config) every held source of the days is released "
    "whatever its share, its rejected rows going to quarantine. Launch it for the days the quarantine asset lists "
    "(a backfill of this job covers a range).",
)
