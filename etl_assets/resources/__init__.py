"""Dagster resources, kept small: the warehouse engine and the object store."""

from etl_assets.resources.object_store import ObjectStoreResource
from etl_assets.resources.warehouse import WarehouseResource

__all__ = ["ObjectStoreResource", "WarehouseResource"]
