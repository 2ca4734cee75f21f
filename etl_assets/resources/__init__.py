"""Dagster resources, kept small: the warehouse engine, the object store and the events API."""

from etl_assets.resources.events_api_sources import EventsApiResource
from etl_assets.resources.object_store import ObjectStoreResource
from etl_assets.resources.warehouse import WAREHOUSE_POOL, WarehouseResource

__all__ = ["WAREHOUSE_POOL", "EventsApiResource", "ObjectStoreResource", "WarehouseResource"]
