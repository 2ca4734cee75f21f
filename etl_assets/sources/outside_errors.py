"""Whether an error of an outside call (S3, the events API, the database) may go away, and what to do about it.

Transient: throttling, 5xx, 408/429, timeouts, dropped connections, serialization failures and deadlocks; a later
attempt may succeed, so the call's own retries and then the step's retry policy try again. Permanent: a request
that fails validation, another 4xx (access denied, a missing object, a wrong token), a constraint or a privilege
the database refuses, and anything not known to be transient; the same call fails the same way until someone
changes something, so nothing retries it. Either way the message's first line says what to do.
"""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy.exc import DBAPIError

from etl_assets.sources.events_api import ApiError
from etl_assets.sources.s3 import describe_s3_error, is_transient_s3_error
from etl_assets.warehouse.retries import describe as describe_database_error
from etl_assets.warehouse.retries import is_transient as is_transient_database_error


@dataclass(frozen=True)
class OutsideFailure:
    transient: bool
    message: str
    """One line (at least its first) that says what failed and what to do."""


def sort_error(error: BaseException) -> OutsideFailure:
    """The kind of ``error`` and the message a failed step shows for it."""
    if isinstance(error, ApiError):
        return OutsideFailure(error.transient, str(error))
    if isinstance(error, ClientError | BotoCoreError):
        summary = describe_s3_error(error)
        if is_transient_s3_error(error):
            return OutsideFailure(
                True,
                f"the object store kept failing ({summary}) after its retries: check that it is up "
                "(`etl status`); the step is retried, and a run that still fails can be re-executed once it is",
            )
        return OutsideFailure(
            False,
            f"the object store refused the request ({summary}): check the bucket names (ETL_LANDING_BUCKET, "
            "ETL_ARCHIVE_BUCKET) and that the credentials may read and write them, then re-execute the run",
        )
    if isinstance(error, DBAPIError):
        summary = describe_database_error(error)
        if is_transient_database_error(error):
            return OutsideFailure(
                True,
                f"the warehouse kept failing ({summary}) for as long as its retries wait: check that PostgreSQL "
                "is up (`etl status`); the step is retried, and a run that still fails can be re-executed once it is",
            )
        return OutsideFailure(
            False,
            f"the warehouse refused a statement ({summary}): check the database role's grants and that the schema "
            f"is current (`etl migrate`), then re-execute the run ({_server_message(error)})",
        )
    return OutsideFailure(False, f"{type(error).__name__}: {_first_line(error)}; fix the cause and re-execute the run")


def _server_message(error: DBAPIError) -> str:
    """What the server said (``permission denied for table …``), never the statement or its parameters."""
    diag = getattr(error.orig, "diag", None)
    return getattr(diag, "message_primary", None) or type(error.orig).__name__


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
