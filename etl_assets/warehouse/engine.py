"""Engines for the warehouse: psycopg 3, pooled, sized from configuration."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL

from etl_assets.settings import with_driver


def create_warehouse_engine(
    url: URL | str, *, pool_size: int = 5, max_overflow: int = 5, connect_timeout: int | None = None
) -> Engine:
    """``connect_timeout`` (seconds) bounds how long a connection attempt to an unreachable server waits.

    ``preserve_rowcount``: SQLAlchemy 2.1 reports ``rowcount`` of INSERT statements (the staging, ledger and
    quarantine writes count their rows by it) only when asked to.
    """
    if isinstance(url, str):
        from etl_assets.settings import parse_database_url

        url = parse_database_url(url)
    return create_engine(
        with_driver(url, "psycopg"),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": connect_timeout} if connect_timeout else {},
        execution_options={"preserve_rowcount": True},
    )
