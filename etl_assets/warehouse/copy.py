"""COPY FROM STDIN through the SQLAlchemy connection's psycopg connection: the fast path for rows.

Rows are streamed to the server as they are produced; nothing here holds more than one row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

import psycopg
from psycopg import sql
from sqlalchemy import Connection, Table, TableClause, column, table


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


def create_temp_table(conn: Connection, name: str, like: Table, columns: Sequence[str] | None = None) -> TableClause:
    """A temporary table with ``like``'s column types (only ``columns`` when given), dropped at commit; returned
    as a lightweight table to select from."""
    wanted = columns or [column.name for column in like.columns]
    select_list = sql.SQL(", ").join(map(sql.Identifier, wanted))
    with _cursor(conn) as cursor:
        cursor.execute(
            sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                sql.Identifier(name), select_list, sql.Identifier(like.name)
            )
        )
    return table(name, *(column(name_) for name_ in wanted))
