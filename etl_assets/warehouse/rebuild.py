"""Rebuilding a table's window of days from a query, server-side: the write of every daily table asset.

The window's rows are deleted and the query's rows inserted in their place in one transaction, so readers
see the old days or the new ones, and running it again replaces the window with the same rows. No row
passes through Python. Rebuilds of one table are serialized by an advisory lock; a transient error runs
the transaction again on a new connection.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import Connection, Engine, Select, Table, delete, insert, text

from etl_assets.warehouse.retries import in_transaction

TAKE_REBUILD_LOCK = text("SELECT pg_advisory_xact_lock(hashtext(:name))")


def replace_window(
    engine: Engine, table: Table, query: Select, days: tuple[date, date] | None, partition_column: str = "day"
) -> tuple[int, int]:
    """Replace the rows of ``table`` whose ``partition_column`` lies in ``[days[0], days[1])`` (the whole table
    when ``days`` is None) with the rows of ``query``; return (rows removed, rows written)."""
    removal = delete(table)
    if days is not None:
        column = table.c[partition_column]
        removal = removal.where(column >= days[0], column < days[1])
    labels = [column.key for column in query.selected_columns]

    def rebuild(conn: Connection) -> tuple[int, int]:
        conn.execute(TAKE_REBUILD_LOCK, {"name": f"rebuild:{table.name}"})
        removed = conn.execute(removal).rowcount
        return removed, conn.execute(insert(table).from_select(labels, query)).rowcount

    return in_transaction(engine, rebuild, what=f"rebuilding {table.name}")
