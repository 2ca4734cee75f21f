"""What the UI shows of a warehouse table: its column schema, taken from the SQLAlchemy table, and the
column lineage of a table built in SQL, taken from its query."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg
from sqlalchemy import Select, Table, select

from etl_assets.warehouse.lineage import column_lineage

OWNERS = ["team:data-platform"]


def table_metadata(table: Table) -> dict[str, Any]:
    columns = [
        dg.TableColumn(
            name=column.name,
            type=str(column.type).lower(),
            description=column.comment,
            constraints=dg.TableColumnConstraints(nullable=bool(column.nullable)),
        )
        for column in table.columns
    ]
    return {
        "dagster/column_schema": dg.TableSchema(columns=columns),
        "dagster/table_name": f"public.{table.name}",
        "etl/table": table.name,
    }


def column_lineage_from(
    build: Callable[[Select], Select], source: Table, source_asset: str, also_read: tuple[Table, ...] = ()
) -> dg.TableColumnLineage:
    """The lineage of the table ``build`` makes from the rows of ``source`` (the asset ``source_asset``).

    ``also_read`` are tables the same asset writes beside ``source`` that ``build`` reads too (``order_lines``,
    written with ``events``); their columns are named ``<table>.<column>``.
    """
    query = build(select(source))
    deps: dict[str, list[str]] = column_lineage(query, source)
    for table in also_read:
        for column, names in column_lineage(query, table).items():
            deps[column] = sorted([*deps.get(column, []), *(f"{table.name}.{name}" for name in names)])
    return dg.TableColumnLineage(
        deps_by_column={
            column: [dg.TableColumnDep(asset_key=dg.AssetKey(source_asset), column_name=name) for name in names]
            for column, names in deps.items()
        }
    )
