"""The warehouse resource: one pooled SQLAlchemy engine per process."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr
from sqlalchemy import Engine

from etl_assets.settings import Settings
from etl_assets.warehouse.engine import create_warehouse_engine

WAREHOUSE_POOL = "warehouse"
"""The Dagster concurrency pool of every step that opens connections with a ``WarehouseResource``; dagster.yaml
sizes it for the server's connection limit. A pool belongs to a step's op, which an ``AssetSpec`` does not carry,
so ``Definitions.map_asset_specs`` cannot set it once for all: each asset, check and op names this constant."""


class WarehouseResource(ConfigurableResource):
    """The PostgreSQL warehouse. The URL comes from the environment (``EnvVar("DATABASE_URL")``) so no
    secret is written into run config or shown in the UI. TLS to the server (ETL_DB_SSLMODE,
    ETL_DB_SSLROOTCERT) is read from the environment when the engine is built, like the URL."""

    database_url: str = Field(description="SQLAlchemy URL of the warehouse database.")
    pool_size: int = Field(default=5, description="Connections kept open per process.")
    max_overflow: int = Field(default=5, description="Connections allowed beyond the pool under load.")
    connect_timeout: int = Field(
        default=10,
        description="Seconds a connection attempt waits for the server (a connect_timeout in the URL wins). Without "
        "it a server that does not answer holds a step in the kernel's TCP connect for minutes, past the retries' "
        "budget for transient errors.",
    )

    _engine: Engine | None = PrivateAttr(default=None)

    def get_engine(self) -> Engine:
        if self._engine is None:
            settings = Settings.from_env()
            self._engine = create_warehouse_engine(
                self.database_url,
                pool_size=self.pool_size,
                max_overflow=self.max_overflow,
                connect_timeout=self.connect_timeout,
                ssl=settings.db_ssl_params,
                pgbouncer=settings.db_pgbouncer,
            )
        return self._engine
