"""Daily partitions (UTC) shared by ``events`` and the enrichment tables, and how a backfill of them runs."""

from __future__ import annotations

import dagster as dg

from etl_assets.orchestration.partition_days import FIRST_DAY

daily_partitions = dg.DailyPartitionsDefinition(start_date=FIRST_DAY.isoformat(), timezone="UTC", end_offset=1)
"""One partition per UTC day from ``ETL_FIRST_DAY`` through today (``end_offset=1``: today's events load today)."""

single_run_backfill = dg.BackfillPolicy.single_run()
"""A backfill is one run (``dagster asset materialize --partition-range`` executes only single-run policies); the
run merges its days several at a time (``ETL_MERGE_DAYS_AT_ONCE``)."""
