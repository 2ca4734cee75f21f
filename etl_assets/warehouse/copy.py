"""COPY FROM STDIN through the SQLAlchemy connection's psycopg connection, the fast path for rows, and the
temporary tables rows are copied into or gathered in.

Rows are streamed to the server as they are produced; nothing here holds more than one row. ``COPY`` goes to the
driver's cursor, not through SQLAlchemy, so its table and column names are quoted with ``psycopg.sql``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

import psycopg
from psycopg import sql
from sqlalchemy import Connection, Table, TableClause, TextClause, column, table, text


def _cursor(conn: Connection) -> psycopg.Cursor[Any]:
    driver = cast("psycopg.Connection[Any]", conn.connection.driver_connection)  # the engines use psycopg 3
    return driver.cursor()


def copy_rows(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """``COPY table (columns) FROM STDIN`` with ``rows``, inside the connection's transaction; returns the count."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    count = 0
    with _cursor(conn) as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def temp_table(name: str, *, columns: str | None = None, query: str | None = None) -> TextClause:
    """``CREATE TEMP TABLE name`` with the column definitions ``columns``, or filled by the SQL ``query``, dropped
    at commit: every temporary table of the warehouse's transactions is made by this statement (a connection is
    only the transaction's, behind PgBouncer: ``warehouse.connect_options``)."""
    if (columns is None) == (query is None):
        raise ValueError("a temporary table takes either its columns or a query")
    if columns is not None:
        return text(f"CREATE TEMP TABLE {name} ({columns}) ON COMMIT DROP")
    return text(f"CREATE TEMP TABLE {name} ON COMMIT DROP AS {query}")


def create_temp_table(conn: Connection, name: str, like: Table, columns: Sequence[str] | None = None) -> TableClause:
    """A temporary table with ``like``'s column types (only ``columns`` when given), dropped at commit; returned
    as a lightweight table to select from."""
    wanted = columns or [column.name for column in like.columns]
    conn.execute(temp_table(name, query=f"SELECT {', '.join(wanted)} FROM {like.name} WITH NO DATA"))
    return table(name, *(column(name_) for name_ in wanted))
