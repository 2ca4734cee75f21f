"""Alembic environment: the target is the warehouse MetaData; the URL comes from DATABASE_URL.

Run from code (``etl migrate``, ``etl dev``, tests) a connection is passed in
``config.attributes["connection"]``; run as ``alembic upgrade head`` it connects to DATABASE_URL.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from etl_assets.settings import Settings
from etl_assets.warehouse.engine import create_warehouse_engine
from etl_assets.warehouse.migrate import include_name
from etl_assets.warehouse.schema import metadata


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_name=include_name,
        compare_type=True,
        compare_server_default=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_with(connection)
        return
    settings = Settings.from_env()
    if settings.database_url is None:
        raise SystemExit(
            "DATABASE_URL is not set: point it at the warehouse, or use `etl migrate` with `etl dev` running"
        )
    engine = create_warehouse_engine(settings.database_url, ssl=settings.db_ssl_params)
    with engine.connect() as conn:
        run_with(conn)
        conn.commit()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run them against a database")
run_migrations_online()
