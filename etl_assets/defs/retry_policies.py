"""How Dagster retries a step that talks to the outside (S3, the events API, the database) when it fails.

Inside a step, a transient database error already re-runs its transaction (``etl_assets.warehouse.retries``,
up to a minute). A step that still fails (S3 or the API unreachable, the database down for longer) is retried
whole by Dagster after a growing, jittered delay; that is safe because every such step is idempotent
(batch ids, the stored cursor, ``ON CONFLICT``). A run that fails even so is retried by ``run_retries`` in
``dagster.yaml``.
"""

import dagster as dg

OUTSIDE_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3,
    delay=10,
    backoff=dg.Backoff.EXPONENTIAL,
    jitter=dg.Jitter.PLUS_MINUS,
)
"""Up to 3 retries, 10 s, 30 s and 70 s after the failures (Dagster's exponential backoff), each ± up to 10 s."""
