"""How Dagster retries a step that talks to the outside (S3, the events API, the database) when it fails of a
transient error; which errors those are, and the failure that is not retried, is
``etl_assets.orchestration.step_failures``."""

import dagster as dg

OUTSIDE_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3,
    delay=10,
    backoff=dg.Backoff.EXPONENTIAL,
    jitter=dg.Jitter.PLUS_MINUS,
)
"""Up to 3 retries, 10 s, 30 s and 70 s after the failures (Dagster's exponential backoff), each ± up to 10 s."""
