"""What the UI shows of a warehouse table: its column schema, taken from the SQLAlchemy table."""

from __future__ import annotations

from typing import Any

import dagster as dg
from sqlalchemy import Table

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
