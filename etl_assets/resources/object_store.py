"""The object store: landing files and the raw archive, on S3 or any S3-compatible endpoint."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from dagster import ConfigurableResource
from pydantic import Field


def s3_client(endpoint_url: str | None, region_name: str, **credentials: str) -> Any:
    """A boto3 S3 client with adaptive retries (throttling, 5xx) and path-style addressing for local
    endpoints. Credentials come from the standard AWS chain unless given."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region_name,
        config=Config(
            retries={"mode": "adaptive", "max_attempts": 8},
            s3={"addressing_style": "path"} if endpoint_url else {},
            connect_timeout=5,
            read_timeout=60,
        ),
        **credentials,
    )


class ObjectStoreResource(ConfigurableResource):
    """Where event files land and where every byte that entered is archived."""

    endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint; None means AWS S3.")
    region_name: str = Field(default="us-east-1")
    landing_bucket: str = Field(description="Bucket that event files are dropped into.")
    landing_prefix: str = Field(default="landing/", description="Key prefix of landing files.")
    archive_bucket: str = Field(description="Bucket of the raw archive.")

    def client(self) -> Any:
        return s3_client(self.endpoint_url, self.region_name)
