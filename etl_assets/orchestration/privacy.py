"""PII as the Dagster layer hands it to the transform: the field names from ``ETL_PII_FIELDS`` and the key from
``ETL_PII_KEY``, read from the environment when a run needs it (never config, metadata or logs; the policy's
``repr`` leaves the key out).

A staged record that holds PII while no key is set stops the run with one line saying what to set: the day's
merge rolls back, so nothing is loaded in clear.
"""

from __future__ import annotations

import dagster as dg

from etl_assets.transform.pii import PiiKeyMissing


def missing_key_message(error: PiiKeyMissing) -> str:
    return (
        f"a staged record holds PII ({error.where}) and ETL_PII_KEY is unset: set ETL_PII_KEY to a secret of 16+ "
        "characters (e.g. `openssl rand -hex 32`) so PII is pseudonymized; nothing was loaded"
    )


def missing_key_failure(error: PiiKeyMissing) -> dg.Failure:
    return dg.Failure(description=missing_key_message(error), allow_retries=False)
