"""Resources bound for every asset, sensor and job of the code location.

Values that are secrets (the database URL, AWS credentials) are read from the environment at run
time (``EnvVar`` / the AWS chain), never written into config, so they never reach the UI or a run's
metadata. The rest comes from ``Settings`` and is cheap to read at load.
"""

import dagster as dg

from etl_assets.io_managers.postgres import WarehouseIOManager
from etl_assets.resources import EventsApiResource, ObjectStoreResource, WarehouseResource
from etl_assets.settings import Settings


@dg.definitions
def resources() -> dg.Definitions:
    settings = Settings.from_env()
    warehouse = WarehouseResource(
        database_url=dg.EnvVar("DATABASE_URL"),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    return dg.Definitions(
        resources={
            "warehouse": warehouse,
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
    )
