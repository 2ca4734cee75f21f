"""The S3 client every part of the platform reaches the object store with (pipeline steps, the collector, the
local stack): botocore's standard retries, bounded timeouts, path-style addressing for local endpoints.

Free of Dagster, so the collector starts without importing it.

Its errors sort into transient ones (``is_transient_s3_error``: throttling, 5xx, 408, timeouts, dropped
connections), which botocore's standard mode retries in the call and a step's retry policy may retry again, and
permanent ones (a request that fails validation, 4xx such as access denied or a missing object), which neither
retries."""

from __future__ import annotations

from typing import Any, Unpack

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

from etl_assets.settings import S3ClientCredentials, Settings

RETRIES = 8
"""Retries of a failed call (503 SlowDown and other throttling, 5xx, a timeout, a dropped connection): botocore
waits a random time up to 1, 2, 4, … 20 s before each, so a pipeline step rides out a minute or so of trouble."""
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 60.0
"""Silence on an open connection before the call counts as timed out and is retried. Not shorter: a server-side
copy of a large object may say nothing for a long while."""


def s3_client(
    endpoint_url: str | None,
    region_name: str,
    *,
    retries: int = RETRIES,
    read_timeout: float = READ_TIMEOUT_SECONDS,
    **credentials: Unpack[S3ClientCredentials],
) -> Any:
    """A boto3 S3 client with botocore's standard retries (503 SlowDown and other throttling, 5xx, a copy that
    fails after its 200, timeouts, dropped connections; exponential backoff with full jitter) and path-style
    addressing for local endpoints. Credentials come from the standard AWS chain unless given. A caller whose own
    client is waiting for it (the collector) gives fewer ``retries``.

    Not the adaptive mode: its client-side rate limiter, shared by every bucket the client reaches, held each call
    back for seconds after a few SlowDowns even at a handful of calls per second (the AWS SDK guide recommends
    standard and keeps adaptive for specialised cases)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region_name,
        config=Config(
            retries={"mode": "standard", "max_attempts": retries},
            s3={"addressing_style": "path"} if endpoint_url else {},
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=read_timeout,
        ),
        **credentials,
    )


def platform_s3_client(settings: Settings) -> Any:
    """The client of the platform's object store: the configured endpoint with the AWS chain, or the local one of
    ``etl dev`` with the credentials it accepts."""
    if settings.s3_is_external:
        return s3_client(settings.s3_endpoint_url, settings.aws_region)
    return s3_client(
        f"http://127.0.0.1:{settings.s3_port}", settings.aws_region, **Settings.local_s3_client_credentials()
    )


TRANSIENT_STATUSES = frozenset({408, 429})
"""4xx statuses that a later attempt may get past (request timeout, too many requests); every 5xx is transient."""
THROTTLING_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"}
)
TRANSIENT_CODES = frozenset({"RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable"})
"""Codes botocore's standard mode retries besides throttling (its transient error codes)."""


def s3_error_code(error: BaseException) -> str | None:
    """The S3 error code (``NoSuchKey``, ``AccessDenied``, ``SlowDown``…) of a ``ClientError``, else None."""
    if isinstance(error, ClientError):
        return error.response.get("Error", {}).get("Code") or None
    return None


def s3_status(error: BaseException) -> int | None:
    if isinstance(error, ClientError):
        return error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None


def is_transient_s3_error(error: BaseException) -> bool:
    """Whether the same S3 call may succeed later: throttling, 5xx, 408/429, a timeout, a dropped connection."""
    if isinstance(error, ClientError):
        status = s3_status(error) or 0
        code = s3_error_code(error) or ""
        return status >= 500 or status in TRANSIENT_STATUSES or code in THROTTLING_CODES | TRANSIENT_CODES
    return isinstance(error, ConnectionError | HTTPClientError)


def describe_s3_error(error: BaseException) -> str:
    """One line: the S3 code and status (``AccessDenied, HTTP 403``) or botocore's own error and message."""
    if isinstance(error, ClientError):
        return f"{s3_error_code(error) or 'error'}, HTTP {s3_status(error) or '?'}"
    if isinstance(error, BotoCoreError):
        text = str(error).strip().splitlines()
        return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")
    return type(error).__name__
