"""Daily enrichment: per-day tables for dashboards and ML, built in SQL from the day's ``events``.

Each asset returns a ``Select``; the IO manager replaces the day's rows with it server-side in one
transaction, so a rebuild is atomic and a re-run gives the same rows. The column lineage each table
shows (which ``events`` columns each of its columns is computed from) is read from that same query.
"""

from collections.abc import Callable

import dagster as dg
from sqlalchemy import Select, Table

from etl_assets.defs.freshness import warehouse_freshness_policy
from etl_assets.defs.partitions import daily_partitions, single_run_backfill
from etl_assets.io_managers.postgres import MARGIN_DAYS
from etl_assets.orchestration.table_metadata import OWNERS, column_lineage_from, table_metadata
from etl_assets.resources import WAREHOUSE_POOL
from etl_assets.warehouse import enrichment, schema

ENRICHMENT_VERSION = "2"


AROUND_EACH_DAY = dg.AssetIn(metadata={MARGIN_DAYS: 1})
"""A day's events with the day before and after (the IO manager widens the window; the partition mapping stays
the identity, so a range still runs as one run): what sessions that run past midnight are read from."""


def _daily_table(
    table: Table,
    build: Callable[..., Select],
    description: str,
    *,
    also_read: tuple[Table, ...] = (),
    sessions_across_days: bool = False,
) -> dg.AssetsDefinition:
    """The asset of a daily table built by ``build``; ``also_read``: tables the query reads beside ``events``;
    ``sessions_across_days``: ``build`` takes the events of a day wider on each side and the days to keep
    (``enrichment.Days``)."""
    lineage = column_lineage_from(build, schema.events, "events", also_read)
    ins = {"events": AROUND_EACH_DAY} if sessions_across_days else None

    @dg.asset(
        name=table.name,
        ins=ins,
        partitions_def=daily_partitions,
        backfill_policy=single_run_backfill,
        pool=WAREHOUSE_POOL,
        code_version=ENRICHMENT_VERSION,
        group_name="enrichment",
        owners=OWNERS,
        kinds={"postgres"},
        metadata={**table_metadata(table), "dagster/column_lineage": lineage},
        freshness_policy=warehouse_freshness_policy(),
        description=description,
    )
    def daily_table(context: dg.AssetExecutionContext, events: Select) -> Select:
        context.add_output_metadata({"dagster/column_lineage": lineage})
        if sessions_across_days:
            window = context.partition_time_window
            return build(events, (window.start.date(), window.end.date()))
        return build(events)

    return daily_table


user_daily_activity = _daily_table(
    schema.user_daily_activity,
    enrichment.user_daily_activity_query,
    "One row per person and day (events.person_id: the user, with the anonymous browsing linked to them, or the "
    "anonymous id of a visitor who never logged in): events by type, sessions started, first and last seen. "
    "Rebuilt from the day's events whenever the day is merged or its persons change.",
    sessions_across_days=True,
)

sessions = _daily_table(
    schema.sessions,
    enrichment.sessions_query,
    "One row per visit: a person's events until 30 minutes pass without one, on the day it started (a visit "
    "past midnight UTC stays one); start, end, duration, events, page views and whether the visit ended in a "
    "purchase. Rebuilt from the day's events and those of the days around it.",
    sessions_across_days=True,
)

daily_funnel = _daily_table(
    schema.daily_funnel,
    enrichment.daily_funnel_query,
    "One row per day: persons who viewed a product → of those, who added to cart → of those, who purchased; "
    "with the conversion rate of each step (between 0 and 1). Rebuilt from the day's events.",
)

product_daily_sales = _daily_table(
    schema.product_daily_sales,
    enrichment.product_daily_sales_query,
    "One row per product, day and currency: completed orders, units sold, refunded and net, and gross, refunded and "
    "net revenue (price times units), from the order lines of the day's order events. A refund or cancellation "
    "without products takes back the whole order. Rebuilt from the day's events and their order lines.",
    also_read=(schema.order_lines,),
)
