"""What quarantine holds: the figures the ``quarantine`` asset and the pipeline's metrics show, and the days a
re-drive covers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection, Engine, text

from etl_assets.warehouse.schema import STAGE_NORMALIZE

REASONS_SHOWN = 20
COUNT_QUARANTINE = text(
    "SELECT count(*) FILTER (WHERE resolved_at IS NULL), count(*) FILTER (WHERE resolved_at IS NOT NULL) "
    "FROM quarantine"
)
UNRESOLVED_BY_REASON = text(
    "SELECT stage, reason, count(*) FROM quarantine WHERE resolved_at IS NULL GROUP BY stage, reason "
    "ORDER BY count(*) DESC, reason LIMIT :limit"
)
UNRESOLVED_BY_SOURCE = text(
    "SELECT source, count(*) FROM quarantine WHERE resolved_at IS NULL GROUP BY source ORDER BY count(*) DESC"
)
REDRIVABLE_DAYS = text(
    "SELECT DISTINCT event_day FROM quarantine "
    f"WHERE resolved_at IS NULL AND stage = '{STAGE_NORMALIZE}' AND event_day IS NOT NULL ORDER BY event_day"
)
QUARANTINE_BY_STAGE = text(
    "SELECT stage, resolved_at IS NOT NULL, count(*) FROM quarantine GROUP BY stage, resolved_at IS NOT NULL"
)


@dataclass(frozen=True)
class QuarantineSummary:
    unresolved: int
    resolved: int
    by_reason: list[tuple[str, str, int]]
    """(stage, reason, unresolved rows), largest first."""
    by_source: list[tuple[str, int]]
    redrivable_days: list[date]
    """Days with unresolved rows the transform rejected: a re-drive of these days retries them."""


def summarize_quarantine(engine: Engine) -> QuarantineSummary:
    with engine.connect() as conn:
        counts = conn.execute(COUNT_QUARANTINE).one()
        by_reason = conn.execute(UNRESOLVED_BY_REASON, {"limit": REASONS_SHOWN}).all()
        by_source = conn.execute(UNRESOLVED_BY_SOURCE).all()
        days = conn.scalars(REDRIVABLE_DAYS).all()
    return QuarantineSummary(
        unresolved=counts[0],
        resolved=counts[1],
        by_reason=[tuple(row) for row in by_reason],
        by_source=[tuple(row) for row in by_source],
        redrivable_days=list(days),
    )


def quarantined_by_stage(conn: Connection) -> list[tuple[str, bool, int]]:
    """Quarantined records by stage and whether a re-drive resolved them."""
    return [(stage, resolved, count) for stage, resolved, count in conn.execute(QUARANTINE_BY_STAGE)]
