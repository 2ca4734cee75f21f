"""One JSON object per log line, with the run, asset, partition and batch a line belongs to.

``dagster.yaml`` installs ``JsonLogFormatter`` on Dagster's log handler (``python_logs``), so every line
a run, a sensor or the daemon logs can be shipped to a log store and filtered by field instead of by
regular expression. Fields come from the record Dagster builds (run id, job, step, its tags) and from
``extra`` the platform's own code passes (``batch_id``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
    RUN_KEY_TAG,
)

EXTRA_FIELDS = ("batch_id", "source", "rows", "rows_per_second")


def _partition(tags: dict[str, str]) -> str | None:
    if PARTITION_NAME_TAG in tags:
        return tags[PARTITION_NAME_TAG]
    if ASSET_PARTITION_RANGE_START_TAG in tags:
        start = tags[ASSET_PARTITION_RANGE_START_TAG]
        return f"{start}..{tags.get(ASSET_PARTITION_RANGE_END_TAG, start)}"
    return None


def _asset(meta: dict[str, Any]) -> str | None:
    event = meta.get("dagster_event")
    asset_key = getattr(event, "asset_key", None) if event is not None else None
    if asset_key is not None:
        return asset_key.to_user_string()
    return meta.get("step_key") or meta.get("op_name")


def log_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields of one log line: time, level, message, and where it came from."""
    meta: dict[str, Any] = getattr(record, "dagster_meta", None) or {}
    tags = dict(meta.get("job_tags") or {})
    event = meta.get("dagster_event")
    fields: dict[str, Any] = {
        "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname,
        "logger": record.name,
        "message": meta.get("orig_message") or record.getMessage(),
        "run_id": meta.get("run_id"),
        "job": meta.get("job_name"),
        "step": meta.get("step_key"),
        "asset": _asset(meta),
        "partition": _partition(tags),
        "event": event.event_type_value if event is not None else None,
        "batch_id": tags.get(RUN_KEY_TAG) if tags.get("etl/landing_key") else None,
    }
    for name in EXTRA_FIELDS:
        if hasattr(record, name):
            fields[name] = getattr(record, name)
    if record.exc_info:
        fields["error"] = logging.Formatter().formatException(record.exc_info)
    return {name: value for name, value in fields.items() if value is not None}


class JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return orjson.dumps(log_fields(record), default=str).decode()
