"""Arguments of the warehouse's psycopg connections that depend on what sits between us and PostgreSQL.

Behind PgBouncer in transaction mode, consecutive transactions of one client connection may run on
different server connections. psycopg 3 prepares a statement on the server once it has run it
``prepare_threshold`` times (5 by default) and then refers to it by name; on another server connection
that name is unknown ("prepared statement "_pg3_0" does not exist") or already taken by another client
("... already exists"). PgBouncer < 1.21 does not track prepared statements, so with it the driver must
not prepare any: ``prepare_threshold=None``. Everything else the warehouse does is transaction-scoped
(``ON COMMIT DROP`` temporary tables, ``pg_advisory_xact_lock``, server-side cursors inside a
transaction) and works in transaction mode.
"""

from __future__ import annotations

from typing import Any


def connect_args(*, connect_timeout: int | None = None, pgbouncer: bool = False) -> dict[str, Any]:
    """The ``connect_args`` of ``create_engine`` for the warehouse (keyword arguments of ``psycopg.connect``);
    ``pgbouncer``: the URL points at PgBouncer in transaction or statement pooling mode (ETL_DB_PGBOUNCER)."""
    args: dict[str, Any] = {}
    if connect_timeout:
        args["connect_timeout"] = connect_timeout
    if pgbouncer:
        args["prepare_threshold"] = None  # never prepare: the next transaction may run on another server connection
    return args
