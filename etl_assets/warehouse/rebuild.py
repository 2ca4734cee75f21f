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

from sqlalchemy import Connection, Engine, Select, Table, delete, insert, text

from etl_assets.warehouse.retries import in_transaction

TAKE_REBUILD_LOCK = text("SELECT pg_advisory_xact_lock(hashtext(:name))")
SERVE_REQUESTS = text("DELETE FROM rebuild_requests WHERE table_name = :table_name")
SERVE_REQUESTS_OF_DAYS = text(
    "DELETE FROM rebuild_requests WHERE table_name = :table_name AND day >= :first AND day < :end"
)
"""A table's rebuild of days serves the requests of those days."""
REQUESTED_DAYS = text("SELECT day, max(requested_at) FROM rebuild_requests GROUP BY day ORDER BY day")


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

    def rebuild(conn: Connection) -> tuple[int, int]:
        conn.execute(TAKE_REBUILD_LOCK, {"name": f"rebuild:{table.name}"})
        if days is None:
            conn.execute(SERVE_REQUESTS, {"table_name": table.name})
        else:
            conn.execute(SERVE_REQUESTS_OF_DAYS, {"table_name": table.name, "first": days[0], "end": days[1]})
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
        return [RequestedDay(*row) for row in conn.execute(REQUESTED_DAYS)]
