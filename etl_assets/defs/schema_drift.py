"""Schema drift on ``staging_events``: the fields each source sends, compared day by day.

The check profiles the staged payloads of its run's days (per source: the field paths, how many rows
hold each, their JSON types), compares each day with what ``source_fields`` knows of the source, then
records the day so the next one compares against it. New, vanished or retyped fields warn; the
payloads keep every field as received, so nothing is lost while someone looks.
"""

from datetime import date, timedelta

import dagster as dg
from sqlalchemy import Engine

from etl_assets.markdown import markdown_table
from etl_assets.orchestration.partition_days import run_partition_days
from etl_assets.quality.drift import days_ingested_within, profile_and_compare_day
from etl_assets.resources import WAREHOUSE_POOL, WarehouseResource
from etl_assets.settings import ChecksSettings
from etl_assets.transform.drift import DriftReport, FieldChange

UNPARTITIONED_RUN_PERIOD = timedelta(hours=24)
"""A run without partitions profiles the days of the staging rows ingested this recently."""
MAX_TABLE_LINES = 200


def run_days(context: dg.AssetCheckExecutionContext, engine: Engine) -> list[date]:
    """The run's days, or in an unpartitioned run the days of the staging rows ingested lately."""
    days = run_partition_days(context)
    if days is not None:
        return days
    with engine.connect() as conn:
        return days_ingested_within(conn, UNPARTITIONED_RUN_PERIOD)


def describe_days(days: list[date]) -> str:
    if len(days) > 3:
        return f"{days[0].isoformat()} … {days[-1].isoformat()} ({len(days)} days)"
    return ", ".join(day.isoformat() for day in days) or "none"


def changes_table(changes: list[tuple[date, FieldChange]], baselines: list[str]) -> str:
    parts = [f"Baseline (first profile, nothing to compare with): {', '.join(baselines)}."] if baselines else []
    if not changes:
        return "\n\n".join([*parts, "No drift."])
    table = markdown_table(
        ("day", "source", "field", "change", "types", "rows"),
        ((day, c.source, c.field, c.change, c.types, c.rows) for day, c in changes[:MAX_TABLE_LINES]),
    )
    parts.append(table)
    if len(changes) > MAX_TABLE_LINES:
        parts.append(f"… and {len(changes) - MAX_TABLE_LINES} more changes.")
    return "\n\n".join(parts)


@dg.asset_check(
    asset="staging_events",
    pool=WAREHOUSE_POOL,
    name="schema_drift",
    blocking=False,
    description="Warns when a source sends fields it never sent, stops sending a field it sent on its last "
    "profiled day, or sends a field with a JSON type it never had. Profiles the staged payloads of the run's "
    "days per source (top-level keys and one level into objects, e.g. properties.sku) in SQL, compares each "
    "day with source_fields, then records it. A source seen for the first time is a baseline; vanished fields "
    "count only on days with at least ETL_DRIFT_MIN_ROWS rows; a day larger than ETL_QUALITY_SAMPLE_ROWS is "
    "profiled on an even sample.",
)
def schema_drift(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, settings: dg.ResourceParam[ChecksSettings]
) -> dg.AssetCheckResult:
    quality = settings.quality
    engine = warehouse.get_engine()
    days = run_days(context, engine)
    reports: list[DriftReport] = []
    sampled_days: dict[date, int] = {}
    for day in days:
        day_reports, step = profile_and_compare_day(engine, day, quality)
        reports += day_reports
        if step > 1 and day_reports:
            sampled_days[day] = step
    changes = [(report.day, change) for report in reports for change in report.changes()]
    new_fields = sum(len(report.new_fields) for report in reports)
    vanished_fields = sum(len(report.vanished_fields) for report in reports)
    changed_types = sum(len(report.changed_types) for report in reports)
    sources = {report.source for report in reports}
    baselines = sorted({report.source for report in reports if report.baseline})
    drift = bool(new_fields or vanished_fields or changed_types)
    context.log.info(
        f"schema drift over {len(days)} day(s): {new_fields} new, {vanished_fields} vanished, "
        f"{changed_types} retyped field(s) in {len(sources)} source(s)"
    )
    return dg.AssetCheckResult(
        passed=not drift,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "new fields": dg.MetadataValue.int(new_fields),
            "vanished fields": dg.MetadataValue.int(vanished_fields),
            "changed types": dg.MetadataValue.int(changed_types),
            "sources profiled": dg.MetadataValue.int(len(sources)),
            "rows profiled": dg.MetadataValue.int(sum(report.rows for report in reports)),
            "sampled": dg.MetadataValue.bool(bool(sampled_days)),
            "sampling": dg.MetadataValue.text(
                ", ".join(f"{day.isoformat()}: 1 row in {step} (id % {step} = 0)" for day, step in sampled_days.items())
                or "every row"
            ),
            "days": dg.MetadataValue.text(describe_days(days)),
            "baseline sources": dg.MetadataValue.text(", ".join(baselines) or "none"),
            "changes": dg.MetadataValue.md(changes_table(changes, baselines)),
        },
    )
