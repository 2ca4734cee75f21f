"""The warehouse IO manager: partition-aware, idempotent writes of every table asset.

An asset returns a SQLAlchemy ``Select``; it is written server-side: the partition window's rows are deleted and
the ``Select`` inserted in their place, in one transaction (no row passes through Python); re-running a partition
replaces it with the same rows. (``events`` writes itself: its function runs the merge and returns a
``MaterializeResult``.)

The target table is the asset's name unless its definition metadata says ``etl/table``; a
partitioned table's day column is ``etl/partition_column`` (``day`` by default).

``load_input`` hands downstream assets a lazy handle: a ``Select`` of the upstream table's partition window
(wider by ``etl/margin_days`` on each side when the input's metadata says so).

Each of these transactions is run again from the start, on a new connection, when a transient error
(serialization failure, deadlock, lost connection) ends it (``etl_assets.warehouse.retries``).
"""

import time as clock
from datetime import date, timedelta
from typing import Any

import dagster as dg
from sqlalchemy import Select, select

from etl_assets.orchestration.materialization import write_figures
from etl_assets.resources.warehouse import WarehouseResource
from etl_assets.transform.days import day_start
from etl_assets.warehouse.rebuild import replace_window
from etl_assets.warehouse.schema import events, metadata

MARGIN_DAYS = "etl/margin_days"
"""Input metadata: read the upstream table this many days beyond each side of the partition window."""


def _window_days(context: dg.OutputContext | dg.InputContext) -> tuple[date, date] | None:
    if not context.has_asset_partitions:
        return None
    window = context.asset_partitions_time_window
    return window.start.date(), window.end.date()


class WarehouseIOManager(dg.ConfigurableIOManager):
    """Writes table assets into the PostgreSQL warehouse and hands their partitions to downstream assets."""

    warehouse: dg.ResourceDependency[WarehouseResource]

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        started = clock.perf_counter()
        if not isinstance(obj, Select):
            raise TypeError(
                f"{context.asset_key.to_user_string()} returned {type(obj).__name__}; the warehouse IO manager "
                "writes a SQLAlchemy Select"
            )
        summary = self._replace_window(context, obj)
        seconds = clock.perf_counter() - started
        rows = summary.pop("rows written")
        context.add_output_metadata(
            {
                "rows written": dg.MetadataValue.int(rows),
                **write_figures(rows, seconds),
                **summary,
            }
        )

    def _target(self, context: dg.OutputContext) -> tuple[str, str]:
        definition = context.definition_metadata or {}
        return (
            str(definition.get("etl/table") or context.asset_key.path[-1]),
            str(definition.get("etl/partition_column") or "day"),
        )

    def _replace_window(self, context: dg.OutputContext, query: Select) -> dict[str, Any]:
        table_name, partition_column = self._target(context)
        days = _window_days(context)
        removed, written = replace_window(
            self.warehouse.get_engine(), metadata.tables[table_name], query, days, partition_column
        )
        summary: dict[str, Any] = {"rows written": written, "rows replaced": dg.MetadataValue.int(removed)}
        if days is not None:
            summary["days"] = dg.MetadataValue.int((days[1] - days[0]).days)
        return summary

    def load_input(self, context: dg.InputContext) -> Any:
        upstream = context.asset_key.path[-1]
        table = metadata.tables[upstream]
        query = select(table)
        days = _window_days(context)
        if days is not None:
            margin = timedelta(days=int((context.definition_metadata or {}).get(MARGIN_DAYS, 0)))
            days = (days[0] - margin, days[1] + margin)
            if table is events:
                start, end = (day_start(day) for day in days)
                query = query.where(events.c.occurred_at >= start, events.c.occurred_at < end)
            else:
                query = query.where(table.c.day >= days[0], table.c.day < days[1])
        return query
