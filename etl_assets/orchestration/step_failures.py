"""How a step that talks to the outside (S3, the events API, the database) fails: retried or not.

Inside a step, each outside call retries its transient errors already (botocore's standard mode, urllib3's
``Retry``, a transaction re-run by ``etl_assets.warehouse.retries``). A step that still fails of a transient error
(S3 or the API unreachable, the database down for longer) is retried whole by Dagster after a growing, jittered
delay (``OUTSIDE_RETRY_POLICY`` in ``etl_assets.defs.retry_policies``); that is safe because every such step is
idempotent (batch ids, the stored cursor, ``ON CONFLICT``). A permanent error (``etl_assets.sources.outside_errors``)
fails the step at once, without those retries: it would fail the same way again. Either way the failure's first
line says what to do.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from etl_assets.sources.outside_errors import sort_error


class TransientFailure(Exception):
    """A transient outside error that outlasted the call's own retries; the step's retry policy tries again."""


@contextmanager
def retried_only_if_transient() -> Iterator[None]:
    """Fail the step with a message that says what to do: retried by ``OUTSIDE_RETRY_POLICY`` when the error is
    transient, at once and for good (``dg.Failure(allow_retries=False)``) when it is not."""
    try:
        yield
    except dg.Failure:
        raise
    except Exception as error:
        failure = sort_error(error)
        if failure.transient:
            raise TransientFailure(failure.message) from error
        raise dg.Failure(description=failure.message, allow_retries=False) from error
