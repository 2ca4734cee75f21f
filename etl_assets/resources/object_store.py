"""The object store: landing files and the raw archive, on S3 or any S3-compatible endpoint."""

from __future__ import annotations

from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from etl_assets.sources.s3 import s3_client


class ObjectStoreResource(ConfigurableResource):
    """Where event files land and where every byte that entered is archived."""

    endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint; None means AWS S3.")
    region_name: str = Field(default="us-east-1")
    landing_bucket: str = Field(description="Bucket that event files are dropped into.")
    landing_prefix: str = Field(default="landing/", description="Key prefix of landing files.")
    archive_bucket: str = Field(description="Bucket of the raw archive.")

    def client(self) -> Any:
        return s3_client(self.endpoint_url, self.region_name)
