"""Daily enrichment: per-day tables for dashboards and ML, built in SQL from the day's ``events``.

Each asset returns a ``Select``; the IO manager replaces the day's rows with it server-side in one
transaction, so a rebuild is atomic and a re-run gives the same rows.
"""

import dagster as dg
from sqlalchemy import Select, Table

from etl_assets.defs.freshness import warehouse_freshness_policy
from etl_assets.defs.partitions import daily_partitions, single_run_backfill
from etl_assets.defs.table_metadata import OWNERS, table_metadata
from etl_assets.warehouse import enrichment, schema

ENRICHMENT_VERSION = "1"


def _daily_table(table: Table, description: str):
    return dg.asset(
        name=table.name,
        partitions_def=daily_partitions,
        backfill_policy=single_run_backfill,
        pool="warehouse",
        code_version=ENRICHMENT_VERSION,
        group_name="enrichment",
        owners=OWNERS,
        kinds={"postgres"},
        metadata=table_metadata(table),
        freshness_policy=warehouse_freshness_policy(),
        description=description,
    )


@_daily_table(
    schema.user_daily_activity,
    "Per user and day: events by type, sessions, first and last seen (anonymous visitors by their anonymous id).",
)
def user_daily_activity(events: Select) -> Select:
    return enrichment.user_daily_activity_query(events)


@_daily_table(
    schema.sessions,
    "Sessions per visitor and day: 30 minutes without an event (or midnight UTC) closes one; duration, events, "
    "page views and whether it converted.",
)
def sessions(events: Select) -> Select:
    return enrichment.sessions_query(events)


@_daily_table(
    schema.daily_funnel,
    "The daily funnel: visitors who viewed a product → of those, added to cart → of those, purchased; with rates.",
)
def daily_funnel(events: Select) -> Select:
    return enrichment.daily_funnel_query(events)


@_daily_table(
    schema.product_daily_sales,
    "Orders, units and revenue per product, day and currency, from purchases.",
)
def product_daily_sales(events: Select) -> Select:
    return enrichment.product_daily_sales_query(events)
