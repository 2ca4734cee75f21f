"""When each source last sent something: the input of the source freshness check."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select

from etl_assets.warehouse.schema import raw_batches


@dataclass(frozen=True)
class SourceActivity:
    source: str
    last_received_at: datetime
    batches: int


def recent_source_activity(engine: Engine, now: datetime, lookback: timedelta) -> list[SourceActivity]:
    """Sources that sent at least one batch within ``lookback`` of ``now``, with their latest batch time.

    A source silent for longer than the lookback is taken as retired and no longer reported.
    """
    query = (
        select(raw_batches.c.source, func.max(raw_batches.c.received_at), func.count())
        .where(raw_batches.c.received_at >= now - lookback)
        .group_by(raw_batches.c.source)
        .order_by(raw_batches.c.source)
    )
    with engine.connect() as conn:
        return [SourceActivity(*row) for row in conn.execute(query)]


def freshness_state(silent_for: timedelta, warn_after: timedelta, fail_after: timedelta) -> str:
    """FAIL for a source silent longer than ``fail_after``, WARN longer than ``warn_after``, else ok."""
    if silent_for > fail_after:
        return "FAIL"
    if silent_for > warn_after:
        return "WARN"
    return "ok"
