"""Resources bound for every asset, sensor and job of the code location.

Each part connects as its own database role when the role URLs are configured: ingestion (the ingest
runs, the S3 sensor, the API poller, replays) as ``ingest_warehouse``, everything downstream of staging
as ``warehouse`` (see migration 0004). Values that are secrets (the database URLs, AWS credentials) are read from the environment at run
time (``EnvVar`` / the AWS chain), never written into config, so they never reach the UI or a run's
metadata. The rest comes from ``Settings``, read once as the code location loads (``etl_assets.definitions``) and
bound itself as the ``settings`` resource: what assets, checks, sensors and ops read of it, they take as
``settings: dg.ResourceParam[<the area they need>]``.
"""

import dagster as dg

from etl_assets.io_managers.postgres import WarehouseIOManager
from etl_assets.resources import EventsApiResource, ObjectStoreResource, WarehouseResource
from etl_assets.settings import Settings


def platform_resources(settings: Settings) -> dict[str, object]:
    """Every resource of the code location, configured from ``settings``."""

    def warehouse_as(role_url_variable: str) -> WarehouseResource:
        """The warehouse as one role: its own URL when configured, else DATABASE_URL (the owner)."""
        variable = role_url_variable if role_url_variable in settings.role_urls else "DATABASE_URL"
        return WarehouseResource(
            database_url=dg.EnvVar(variable), pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow
        )

    warehouse = warehouse_as("ETL_TRANSFORM_DATABASE_URL")
    return {
        "settings": settings,
        "warehouse": warehouse,
        "ingest_warehouse": warehouse_as("ETL_INGEST_DATABASE_URL"),
        # The owner (DATABASE_URL), for maintenance no role may do: the retention job's deletions.
        "owner_warehouse": warehouse_as("DATABASE_URL"),
        "io_manager": WarehouseIOManager(warehouse=warehouse),
        "object_store": ObjectStoreResource(
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.aws_region,
            landing_bucket=settings.landing_bucket,
            landing_prefix=settings.landing_prefix,
            archive_bucket=settings.archive_bucket,
        ),
        "events_api": EventsApiResource(
            base_url=settings.events_api_url or settings.demo_events_api_url,
            sources_file=str(settings.events_api_sources_file) if settings.events_api_sources_file else None,
        ),
    }
