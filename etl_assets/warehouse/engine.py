"""Engines for the warehouse: psycopg 3, pooled, sized from configuration."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL

from etl_assets.settings import with_driver
from etl_assets.warehouse.connect_options import connect_args

PING = text("SELECT 1")


def create_warehouse_engine(
    url: URL | str,
    *,
    pool_size: int = 5,
    max_overflow: int = 5,
    connect_timeout: int | None = None,
    ssl: Mapping[str, str] | None = None,
    pgbouncer: bool = False,
) -> Engine:
    """``connect_timeout`` (seconds) bounds how long a connection attempt to an unreachable server waits; a
    ``connect_timeout`` in the URL's query wins over it.

    ``pgbouncer``: the URL points at PgBouncer in transaction mode (ETL_DB_PGBOUNCER; see ``connect_options``).

    ``ssl``: libpq's TLS parameters (``sslmode``, ``sslrootcert``), usually ``Settings.db_ssl_params``
    (ETL_DB_SSLMODE / ETL_DB_SSLROOTCERT). A parameter the URL's query already names wins over it.

    ``preserve_rowcount``: SQLAlchemy 2.1 reports ``rowcount`` of INSERT statements (the staging, ledger and
    quarantine writes count their rows by it) only when asked to.
    """
    if isinstance(url, str):
        from etl_assets.settings import parse_database_url

        url = parse_database_url(url)
    # SQLAlchemy lets connect_args override the URL's query: leave out the TLS parameters the URL sets itself.
    tls: dict[str, Any] = {name: value for name, value in (ssl or {}).items() if name not in url.query}
    if "connect_timeout" in url.query:
        connect_timeout = None
    return create_engine(
        with_driver(url, "psycopg"),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={**connect_args(connect_timeout=connect_timeout, pgbouncer=pgbouncer), **tls},
        execution_options={"preserve_rowcount": True},
    )


def ping(engine: Engine) -> None:
    """Raise unless the warehouse answers a query (the collector's readiness)."""
    with engine.connect() as conn:
        conn.execute(PING)
