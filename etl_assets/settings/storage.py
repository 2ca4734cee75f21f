"""The object store: the S3 endpoint and region, the landing and archive buckets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypedDict

from etl_assets.settings.declare import ConfigError, Section, setting
from etl_assets.settings.parsers import text

_LOCAL_S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


class S3ClientCredentials(TypedDict, total=False):
    """Credentials as boto3's keyword arguments; none given: the standard AWS chain."""

    aws_access_key_id: str
    aws_secret_access_key: str
    aws_session_token: str


def endpoint(name: str, raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ConfigError(f"{name}={raw!r} is not a URL: write it as http(s)://host:port")
    return raw


def bucket(name: str, raw: str) -> str:
    if not (3 <= len(raw) <= 63) or not raw.replace("-", "").replace(".", "").isalnum() or raw != raw.lower():
        raise ConfigError(
            f"{name}={raw!r} is not a valid S3 bucket name: use 3-63 lowercase letters, digits, '-' or '.'"
        )
    return raw


def key_prefix(name: str, raw: str) -> str:
    """A folder: ``/`` added when missing; empty is the bucket's root."""
    return raw if not raw or raw.endswith("/") else raw + "/"


@dataclass(frozen=True)
class StorageSettings(Section):
    s3_endpoint_url: str | None = setting(
        "AWS_ENDPOINT_URL_S3",
        endpoint,
        fallbacks=("AWS_ENDPOINT_URL",),
        help="An S3-compatible endpoint (MinIO, …). When this, `AWS_ENDPOINT_URL` or `AWS_ACCESS_KEY_ID` is set, "
        "`etl dev` starts no local S3 and uses that store; credentials come from the usual AWS variables.",
    )
    aws_region: str = setting(
        "AWS_REGION",
        text,
        default="us-east-1",
        fallbacks=("AWS_DEFAULT_REGION",),
        help="Region for the S3 client.",
    )
    landing_bucket: str = setting(
        "ETL_LANDING_BUCKET", bucket, default="events-landing", help="Bucket where event files land."
    )
    landing_prefix: str = setting(
        "ETL_LANDING_PREFIX",
        key_prefix,
        default="landing/",
        keep_empty=True,
        help="Key prefix of landing files inside the landing bucket.",
    )
    archive_bucket: str = setting(
        "ETL_ARCHIVE_BUCKET",
        bucket,
        default="events-archive",
        help="Bucket of the raw archive (every byte that entered).",
    )
    s3_is_external: bool = False
    """An endpoint or AWS credentials are configured: ``etl dev`` starts no local S3."""

    @staticmethod
    def _derived(env: Mapping[str, str]) -> dict[str, object]:
        external = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or env.get("AWS_ACCESS_KEY_ID")
        return {"s3_is_external": bool(external)}

    @staticmethod
    def local_s3_credentials() -> dict[str, str]:
        """Credentials the local S3 endpoint accepts (moto checks none); boto3 needs some to sign."""
        return dict(_LOCAL_S3_CREDENTIALS)

    @staticmethod
    def local_s3_client_credentials() -> S3ClientCredentials:
        """The same credentials as boto3's keyword arguments (``aws_access_key_id``, ``aws_secret_access_key``)."""
        return S3ClientCredentials(
            aws_access_key_id=_LOCAL_S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=_LOCAL_S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
