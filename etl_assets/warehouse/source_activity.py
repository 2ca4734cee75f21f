"""When each source last sent something, and how much: the input of the source freshness check and of the
pipeline's metrics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, text

_ACTIVITY = (
    "SELECT source, max(received_at), count(*), coalesce(sum(record_count), 0) FROM raw_batches {where}"
    "GROUP BY source ORDER BY source"
)
SOURCE_ACTIVITY = text(_ACTIVITY.format(where=""))
RECENT_SOURCE_ACTIVITY = text(_ACTIVITY.format(where="WHERE received_at >= :since "))


@dataclass(frozen=True)
class SourceActivity:
    source: str
    last_received_at: datetime
    batches: int
    records: int
    """Records parsed from its batches (those staged so far)."""


def recent_source_activity(engine: Engine, now: datetime, lookback: timedelta) -> list[SourceActivity]:
    """Sources that sent at least one batch within ``lookback`` of ``now``, with their latest batch time.

    A source silent for longer than the lookback is taken as retired and no longer reported.
    """
    with engine.connect() as conn:
        return [SourceActivity(*row) for row in conn.execute(RECENT_SOURCE_ACTIVITY, {"since": now - lookback})]


def source_activity(conn: Connection) -> list[SourceActivity]:
    """Every source that ever sent a batch, with its latest batch time and its totals."""
    return [SourceActivity(*row) for row in conn.execute(SOURCE_ACTIVITY)]


def freshness_state(silent_for: timedelta, warn_after: timedelta, fail_after: timedelta) -> str:
    """FAIL for a source silent longer than ``fail_after``, WARN longer than ``warn_after``, else ok."""
    if silent_for > fail_after:
        return "FAIL"
    if silent_for > warn_after:
        return "WARN"
    return "ok"
