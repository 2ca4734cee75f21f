"""Freshness: a source that went quiet turns its tables stale in the UI, and fails a check by name.

``events`` and the daily tables carry a time-window freshness policy (warn after
ETL_FRESHNESS_WARN_MINUTES without a materialization, fail after ETL_FRESHNESS_FAIL_MINUTES); the
near-real-time sensors keep them fresh while data flows. ``sources_fresh`` says which source stopped.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg

from etl_assets.markdown import markdown_table
from etl_assets.resources import WAREHOUSE_POOL, WarehouseResource
from etl_assets.settings import ChecksSettings, definition_settings
from etl_assets.warehouse.source_activity import freshness_state, recent_source_activity

SOURCE_LOOKBACK = timedelta(days=7)


def warehouse_freshness_policy() -> dg.FreshnessPolicy:
    settings = definition_settings()
    return dg.FreshnessPolicy.time_window(
        fail_window=timedelta(minutes=settings.freshness_fail_minutes),
        warn_window=timedelta(minutes=settings.freshness_warn_minutes),
    )


@dg.asset_check(
    asset="raw_payloads",
    pool=WAREHOUSE_POOL,
    description="Every source that sent data in the last 7 days sent some recently: silent longer than "
    "ETL_FRESHNESS_WARN_MINUTES warns, longer than ETL_FRESHNESS_FAIL_MINUTES fails (ERROR).",
)
def sources_fresh(warehouse: WarehouseResource, settings: dg.ResourceParam[ChecksSettings]) -> dg.AssetCheckResult:
    now = datetime.now(UTC)
    warn_after = timedelta(minutes=settings.freshness_warn_minutes)
    fail_after = timedelta(minutes=settings.freshness_fail_minutes)
    activity = recent_source_activity(warehouse.get_engine(), now, SOURCE_LOOKBACK)
    silent = {item.source: now - item.last_received_at for item in activity}
    states = {source: freshness_state(quiet, warn_after, fail_after) for source, quiet in silent.items()}
    failing = sorted(source for source, state in states.items() if state == "FAIL")
    warning = sorted(source for source, state in states.items() if state == "WARN")
    severity = dg.AssetCheckSeverity.ERROR if failing else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        passed=not failing and not warning,
        severity=severity,
        description=None
        if not (failing or warning)
        else "silent: " + ", ".join(f"{source} for {_minutes(silent[source])}" for source in failing + warning),
        metadata={
            "sources": dg.MetadataValue.int(len(activity)),
            "sources silent too long": dg.MetadataValue.int(len(failing)),
            "sources getting quiet": dg.MetadataValue.int(len(warning)),
            "longest silence (minutes)": dg.MetadataValue.float(
                round(max(silent.values(), default=timedelta()).total_seconds() / 60, 1)
            ),
            "by source": dg.MetadataValue.md(
                markdown_table(
                    ("source", "last batch", "silent for", "batches (7 days)", "state"),
                    (
                        (
                            item.source,
                            item.last_received_at.isoformat(timespec="seconds"),
                            _minutes(silent[item.source]),
                            item.batches,
                            "FAIL" if item.source in failing else "WARN" if item.source in warning else "ok",
                        )
                        for item in activity
                    ),
                )
            ),
        },
    )


def _minutes(quiet: timedelta) -> str:
    return f"{quiet.total_seconds() / 60:,.0f} min"
