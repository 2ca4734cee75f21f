"""Rebuilding a table's window of days from a query, server-side: the write of every daily table asset.

The window's rows are deleted and the query's rows inserted in their place in one transaction, so readers
see the old days or the new ones, and running it again replaces the window with the same rows. No row
passes through Python. Rebuilds of one table are serialized by an advisory lock; a transient error runs
the transaction again on a new connection.

A rebuild also removes the table's ``rebuild_requests`` of its days (those a merge made for days beyond its own,
``warehouse.identity``) before it reads ``events``: a request made after that is left for the next rebuild.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import Connection, Engine, Select, Table, delete, func, insert, select, text

from etl_assets.warehouse.retries import in_transaction
from etl_assets.warehouse.schema import rebuild_requests

TAKE_REBUILD_LOCK = text("SELECT pg_advisory_xact_lock(hashtext(:name))")


def replace_window(
    engine: Engine,
    table: Table,
    query: Select[*tuple[Any, ...]],
    days: tuple[date, date] | None,
    partition_column: str = "day",
) -> tuple[int, int]:
    """Replace the rows of ``table`` whose ``partition_column`` lies in ``[days[0], days[1])`` (the whole table
    when ``days`` is None) with the rows of ``query``; return (rows removed, rows written)."""
    removal = delete(table)
    if days is not None:
        column = table.c[partition_column]
        removal = removal.where(column >= days[0], column < days[1])
    # SQLAlchemy types a column's key as optional; a selected column has one.
    labels = [cast(str, column.key) for column in query.selected_columns]
    served = delete(rebuild_requests).where(rebuild_requests.c.table_name == table.name)
    if days is not None:
        served = served.where(rebuild_requests.c.day >= days[0], rebuild_requests.c.day < days[1])

    def rebuild(conn: Connection) -> tuple[int, int]:
        conn.execute(TAKE_REBUILD_LOCK, {"name": f"rebuild:{table.name}"})
        conn.execute(served)
        removed = conn.execute(removal).rowcount
        return removed, conn.execute(insert(table).from_select(labels, query)).rowcount

    return in_transaction(engine, rebuild, what=f"rebuilding {table.name}")


@dataclass(frozen=True)
class RequestedDay:
    """A day some daily table was asked to rebuild, and when the newest such request was made."""

    day: date
    requested_at: datetime


def requested_days(engine: Engine) -> list[RequestedDay]:
    """The days with rebuild requests, oldest day first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(rebuild_requests.c.day, func.max(rebuild_requests.c.requested_at))
            .group_by(rebuild_requests.c.day)
            .order_by(rebuild_requests.c.day)
        )
        return [RequestedDay(*row) for row in rows]
