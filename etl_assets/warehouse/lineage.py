"""Column lineage of a table built in SQL: which source columns each output column is computed from.

Read from the SQLAlchemy ``Select`` itself (through subqueries, window functions and aggregates), so
the lineage the UI shows is the query's, not a second description that could drift from it. A column
computed from no source column (``count(*)``) has no lineage.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Select, Table
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import ColumnClause, ColumnElement


def source_columns(expression: ColumnElement[Any], source: Table) -> set[str]:
    """Names of the columns of ``source`` that ``expression`` reads, following subquery columns to their origin."""
    found: set[str] = set()
    pending: list[ColumnElement[Any]] = [expression]
    seen: set[int] = set()
    while pending:
        element = pending.pop()
        if id(element) in seen:
            continue
        seen.add(id(element))
        for node in visitors.iterate(element):
            if not isinstance(node, ColumnClause):
                continue
            if node.table is source:
                found.add(node.name)
            else:
                pending.extend(proxied for proxied in node.proxy_set if proxied is not node)
    return found


def column_lineage(query: Select[*tuple[Any, ...]], source: Table) -> dict[str, list[str]]:
    """For each output column of ``query`` that reads ``source``, the source columns it reads (sorted)."""
    # SQLAlchemy types a column's key as optional; a selected column has one.
    lineage = {cast(str, column.key): sorted(source_columns(column, source)) for column in query.selected_columns}
    return {name: columns for name, columns in lineage.items() if columns}
