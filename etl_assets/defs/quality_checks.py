"""Data checks: the tables' contracts (pandera) and reconciliation, per day, in the Dagster UI.

- ``staged_day_valid`` (on ``staging_events``) runs in ``daily_events_job`` before the merge and judges each
  source of each day on its own: a source whose staged rows the transform would mostly reject, or whose rows
  sit in the wrong day, is held back (``etl_assets.warehouse.holds``): its rows stay pending, the check warns
  with the reason, and the day's other sources merge. Only an error of the check itself blocks the merge.
- ``events_valid`` and ``events_reconciled`` (on ``events``, blocking) run after the merge and keep
  the enrichment tables from being built on a failed day.
- ``order_lines_valid`` (on ``events``) checks the day's order lines.
- ``<table>_valid`` checks each enrichment table's day.

The rules and thresholds live in ``etl_assets.quality.contracts``; how a day is read and checked
in bounded memory in ``etl_assets.quality.day_checks``.
"""

from datetime import UTC, date, datetime

import dagster as dg

from etl_assets.defs.partitions import daily_partitions
from etl_assets.markdown import markdown_table
from etl_assets.orchestration.partition_days import accepted_times, days_of, run_partition_days
from etl_assets.orchestration.privacy import missing_key_failure
from etl_assets.quality.contracts import (
    Severity,
    enrichment_contracts,
    events_contract,
    order_lines_contract,
    staging_contract,
)
from etl_assets.quality.day_checks import (
    ContractReport,
    check_daily_table,
    check_events_day,
    check_staged_day,
    failing_rows_markdown,
    rules_markdown,
    source_verdicts,
)
from etl_assets.quality.reconciliation import DayReconciliation, reconcile_batches, reconcile_day
from etl_assets.resources import WAREHOUSE_POOL, WarehouseResource
from etl_assets.settings import ChecksSettings, pii_policy
from etl_assets.transform import TRANSFORM_VERSION
from etl_assets.transform.pii import PiiKeyMissing
from etl_assets.warehouse import schema
from etl_assets.warehouse.holds import Hold, describe_hold, record_verdicts
from etl_assets.warehouse.staging import pending_days

SEVERITIES = {Severity.ERROR: dg.AssetCheckSeverity.ERROR, Severity.WARN: dg.AssetCheckSeverity.WARN}
BATCH_RECONCILIATION_DAYS = 7


def contract_result(reports: list[ContractReport], held: list[Hold] | None = None) -> dg.AssetCheckResult:
    """A check result from the reports of one or more days: counts by rule, the rules' table, failing rows.

    ``held`` (the staging gate's) makes it the gate's result: the sources held back lead the description and
    have a table of their own, and the severity is WARN, since a hold keeps back one source's rows, not the run.
    """
    severities = {report.severity for report in reports} - {None}
    severity = Severity.ERROR if Severity.ERROR in severities and held is None else Severity.WARN
    failing_by_rule: dict[str, int] = {}
    for report in reports:
        for verdict in report.verdicts():
            if verdict.failing:
                failing_by_rule[verdict.rule.name] = failing_by_rule.get(verdict.rule.name, 0) + verdict.failing
    readings = sorted({f"{report.reading}, {report.chunks} chunk(s)" for report in reports})
    description = (
        None
        if not severities
        else f"{', '.join(sorted(failing_by_rule))} failed on "
        + ", ".join(sorted({report.day.isoformat() for report in reports if report.severity}))
    )
    held_metadata = {}
    if held is not None:
        held_metadata = {
            "sources held back": dg.MetadataValue.int(len(held)),
            "held back": dg.MetadataValue.md(held_markdown(held)),
        }
        if held:
            description = (
                "held back: "
                + "; ".join(describe_hold(hold) for hold in held)
                + ". The other sources of the day merge; the held rows wait until a later run passes them "
                "or a re-drive releases them"
            )
    return dg.AssetCheckResult(
        passed=not severities,
        severity=SEVERITIES[severity],
        description=description,
        metadata={
            **held_metadata,
            "rows checked": dg.MetadataValue.int(sum(report.rows for report in reports)),
            "days": dg.MetadataValue.text(", ".join(sorted({report.day.isoformat() for report in reports}))),
            "read": dg.MetadataValue.text("; ".join(readings)),
            **{f"failing rows: {rule}": dg.MetadataValue.int(count) for rule, count in sorted(failing_by_rule.items())},
            "rules": dg.MetadataValue.md(rules_markdown(reports)),
            "first failing rows": dg.MetadataValue.md(failing_rows_markdown(reports)),
        },
    )


def result_per_day(
    context: dg.AssetCheckExecutionContext,
    check_key: dg.AssetCheckKey,
    by_day: dict[date, dg.AssetCheckResult],
    overall: dg.AssetCheckResult,
) -> dg.AssetCheckResult:
    """The overall result of a partitioned check, after recording each day's own result on its partition.

    Dagster attributes a check's result to a partition only in a single-partition run; a run over a range
    of days (the sensor's, a backfill) would leave every day's check "planned" in the UI.
    """
    if len(by_day) > 1:
        for day, result in by_day.items():
            context.op_execution_context.log_event(
                # Dagster logs a check evaluation here too (OpExecutionContext.log_event); its annotation omits it.
                dg.AssetCheckEvaluation(  # type: ignore[arg-type]
                    asset_key=check_key.asset_key,
                    check_name=check_key.name,
                    passed=result.passed,
                    severity=result.severity,
                    description=result.description,
                    metadata=result.metadata,
                    partition=day.isoformat(),
                )
            )
    return overall


def contract_result_per_day(
    context: dg.AssetCheckExecutionContext, check_key: dg.AssetCheckKey, reports: list[ContractReport]
) -> dg.AssetCheckResult:
    by_day = {report.day: contract_result([report]) for report in reports}
    return result_per_day(context, check_key, by_day, contract_result(reports))


def held_markdown(held: list[Hold]) -> str:
    if not held:
        return "None."
    return markdown_table(
        ("day", "source", "rows waiting", "reason", "held since"),
        (
            (
                hold.day.isoformat(),
                hold.source,
                hold.rows_waiting,
                hold.reason,
                hold.held_since.isoformat("T", "seconds"),
            )
            for hold in held
        ),
    )


@dg.asset_check(
    asset="staging_events",
    pool=WAREHOUSE_POOL,
    blocking=True,
    description="Before a day merges: the staged rows waiting for it, judged source by source, keep the staging "
    "contract (ids, sources, rows inside their day) and the transform would reject at most "
    "ETL_QUALITY_MAX_REJECTED_SHARE of each source's rows for each reason. A source above that is held back: its "
    "rows stay pending (listed under 'held back', with the reason), the check warns, and every other source of "
    "the day merges. Each later run judges the held rows again and releases a source that passes; a re-drive "
    "(redrive_quarantine_job, merge_held_sources) releases it whatever its share. Below the tolerance, rejected "
    "rows are quarantined and the check warns; duplicate deliveries warn too.",
)
def staged_day_valid(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, settings: dg.ResourceParam[ChecksSettings]
) -> dg.AssetCheckResult:
    quality = settings.quality
    engine = warehouse.get_engine()
    accepted = accepted_times()
    pii = pii_policy()
    reports: list[ContractReport] = []
    held: list[Hold] = []
    try:
        for day in run_partition_days(context) or [pending.day for pending in pending_days(engine)]:
            day_reports = check_staged_day(
                engine, staging_contract(day, quality), day, TRANSFORM_VERSION, accepted, quality, pii
            )
            reports += day_reports
            held += record_verdicts(engine, day, source_verdicts(day_reports))
    except PiiKeyMissing as error:
        raise missing_key_failure(error) from None
    return contract_result(reports, held)


@dg.asset_check(
    asset="events",
    pool=WAREHOUSE_POOL,
    partitions_def=daily_partitions,
    blocking=True,
    description="The day's events keep the events contract: unique event_id, accepted types, required fields, "
    "no negative price or quantity, ISO 4217 currency on priced purchases, occurred_at inside the day (ERROR, "
    "blocks enrichment); events from the future beyond ETL_QUALITY_FUTURE_SKEW_MINUTES and nullable columns "
    "emptier than ETL_QUALITY_MAX_NULL_SHARE warn.",
)
def events_valid(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, settings: dg.ResourceParam[ChecksSettings]
) -> dg.AssetCheckResult:
    quality = settings.quality
    now = datetime.now(UTC)
    reports = [
        check_events_day(warehouse.get_engine(), events_contract(day, now, quality), day, quality)
        for day in days_of(context.partition_time_window)
    ]
    return contract_result_per_day(context, dg.AssetCheckKey(dg.AssetKey("events"), "events_valid"), reports)


@dg.asset_check(
    asset="events",
    pool=WAREHOUSE_POOL,
    partitions_def=daily_partitions,
    blocking=True,
    description="Nothing lost, nothing doubled: for every batch and the whole day, records staged = rows in "
    "events + rows quarantined + duplicates skipped (+ rows still waiting), every row of the day's "
    "partition is accounted for by a staged record, and every order event has one order line per product it "
    "was sent with (no line without its event). A mismatch is an ERROR with the numbers.",
)
def events_reconciled(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    engine = warehouse.get_engine()
    by_day = {day: reconcile_day(engine, day) for day in days_of(context.partition_time_window)}
    return result_per_day(
        context,
        dg.AssetCheckKey(dg.AssetKey("events"), "events_reconciled"),
        {day: reconciliation_result([reconciled]) for day, reconciled in by_day.items()},
        reconciliation_result(list(by_day.values())),
    )


def reconciliation_result(days: list[DayReconciliation]) -> dg.AssetCheckResult:
    """A check result from the reconciliation of one or more days: the totals, a line per day, mismatched batches."""
    totals = {
        name: sum(day.total(name) for day in days)
        for name in ("received", "in_events", "quarantined", "duplicates", "pending")
    }
    mismatched = [(day, batch) for day in days for batch in day.mismatched_batches]
    passed = all(day.balanced for day in days)
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=None
        if passed
        else "; ".join(
            f"{day.day}: {day.unaccounted:+d} staged records unaccounted for, "
            f"{day.events_without_record:+d} events rows without a staged record, "
            f"{day.orders_with_other_lines} order events with other lines than their products, "
            f"{day.lines_without_event} order lines without their event"
            for day in days
            if not day.balanced
        ),
        metadata={
            "records received": dg.MetadataValue.int(totals["received"]),
            "rows in events": dg.MetadataValue.int(totals["in_events"]),
            "rows quarantined": dg.MetadataValue.int(totals["quarantined"]),
            "duplicates skipped": dg.MetadataValue.int(totals["duplicates"]),
            "rows waiting to merge": dg.MetadataValue.int(totals["pending"]),
            "records unaccounted for": dg.MetadataValue.int(sum(day.unaccounted for day in days)),
            "events rows without a record": dg.MetadataValue.int(sum(day.events_without_record for day in days)),
            "events rows whose record retention pruned": dg.MetadataValue.int(sum(day.pruned_records for day in days)),
            "order events with other lines than their products": dg.MetadataValue.int(
                sum(day.orders_with_other_lines for day in days)
            ),
            "order lines without their event": dg.MetadataValue.int(sum(day.lines_without_event for day in days)),
            "batches": dg.MetadataValue.int(sum(len(day.batches) for day in days)),
            "rows held back": dg.MetadataValue.int(sum(day.total("held") for day in days)),
            "by source": dg.MetadataValue.md(
                markdown_table(
                    ("day", "source", "received", "in events", "quarantined", "duplicates", "waiting", "held back"),
                    (
                        (
                            day.day.isoformat(),
                            source,
                            figures["received"],
                            figures["in_events"],
                            figures["quarantined"],
                            figures["duplicates"],
                            figures["pending"],
                            figures["held"],
                        )
                        for day in days
                        for source, figures in sorted(day.by_source().items())
                    ),
                )
            ),
            "by day": dg.MetadataValue.md(
                markdown_table(
                    ("day", "received", "in events", "quarantined", "duplicates", "waiting", "events rows", "balanced"),
                    (
                        (
                            day.day.isoformat(),
                            day.total("received"),
                            day.total("in_events"),
                            day.total("quarantined"),
                            day.total("duplicates"),
                            day.total("pending"),
                            day.events_rows,
                            "yes" if day.balanced else "NO",
                        )
                        for day in days
                    ),
                )
            ),
            "mismatched batches": dg.MetadataValue.md(
                markdown_table(
                    ("day", "batch", "received", "in events", "quarantined", "duplicates", "waiting", "unaccounted"),
                    (
                        (
                            day.day.isoformat(),
                            batch.batch_id,
                            batch.received,
                            batch.in_events,
                            batch.quarantined,
                            batch.duplicates,
                            batch.pending,
                            batch.unaccounted,
                        )
                        for day, batch in mismatched[:50]
                    ),
                )
                if mismatched
                else "None."
            ),
        },
    )


def _enrichment_check(table_name: str) -> dg.AssetChecksDefinition:
    table = schema.metadata.tables[table_name]

    @dg.asset_check(
        asset=table_name,
        pool=WAREHOUSE_POOL,
        name=f"{table_name}_valid",
        partitions_def=daily_partitions,
        description=f"The day's {table_name} rows keep their contract (keys unique, counts not negative, "
        "values in range; funnel rates between 0 and 1).",
    )
    def enrichment_valid(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, settings: dg.ResourceParam[ChecksSettings]
    ) -> dg.AssetCheckResult:
        quality = settings.quality
        reports = [
            check_daily_table(warehouse.get_engine(), table, enrichment_contracts(day)[table_name], day, quality)
            for day in days_of(context.partition_time_window)
        ]
        check_key = dg.AssetCheckKey(dg.AssetKey(table_name), f"{table_name}_valid")
        return contract_result_per_day(context, check_key, reports)

    return enrichment_valid


enrichment_checks = [_enrichment_check(table.name) for table in schema.DAILY_TABLES]


@dg.asset_check(
    asset="events",
    pool=WAREHOUSE_POOL,
    partitions_def=daily_partitions,
    description="The day's order lines (written with events) keep their contract: one row per event and line "
    "number, line numbers from 1, lines only of order events, no negative price or quantity (ERROR); lines "
    "without a product warn.",
)
def order_lines_valid(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, settings: dg.ResourceParam[ChecksSettings]
) -> dg.AssetCheckResult:
    quality = settings.quality
    reports = [
        check_daily_table(warehouse.get_engine(), schema.order_lines, order_lines_contract(day), day, quality)
        for day in days_of(context.partition_time_window)
    ]
    return contract_result_per_day(context, dg.AssetCheckKey(dg.AssetKey("events"), "order_lines_valid"), reports)


@dg.asset_check(
    asset="raw_payloads",
    pool=WAREHOUSE_POOL,
    description=f"Every batch received in the last {BATCH_RECONCILIATION_DAYS} days is accounted for: it was "
    "staged, the ledger's record count equals its staged rows plus its records quarantined before staging, and a "
    "batch that brought bytes brought a record or a quarantine row that says why (every source: files, API pages, "
    "collector requests).",
)
def batches_reconciled(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    batches = reconcile_batches(warehouse.get_engine(), BATCH_RECONCILIATION_DAYS)
    mismatched = [batch for batch in batches if batch.problem]
    return dg.AssetCheckResult(
        passed=not mismatched,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "batches": dg.MetadataValue.int(len(batches)),
            "records": dg.MetadataValue.int(sum(batch.records for batch in batches)),
            "batches mismatched": dg.MetadataValue.int(len(mismatched)),
            "records unaccounted for": dg.MetadataValue.int(sum(batch.unaccounted for batch in mismatched)),
            "mismatched batches": dg.MetadataValue.md(
                markdown_table(
                    ("batch", "source", "records", "staged", "quarantined at parse", "already in events", "problem"),
                    (
                        (b.batch_id, b.source, b.records, b.staged, b.parse_quarantined, b.resent, b.problem)
                        for b in mismatched[:50]
                    ),
                )
                if mismatched
                else "None."
            ),
        },
    )


data_quality_job = dg.define_asset_job(
    "data_quality_job",
    selection=dg.AssetSelection.checks(
        dg.AssetCheckKey(dg.AssetKey("raw_payloads"), "batches_reconciled"),
        dg.AssetCheckKey(dg.AssetKey("raw_payloads"), "sources_fresh"),
    ),
    description="The checks that watch the platform as a whole rather than a day: every recent batch "
    "reconciles, every source still sends.",
)

data_quality_schedule = dg.ScheduleDefinition(
    name="data_quality_schedule",
    job=data_quality_job,
    cron_schedule="*/15 * * * *",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Every 15 minutes: batch reconciliation and source freshness (a quiet source shows up here).",
)
