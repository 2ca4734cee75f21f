"""What quarantine holds: the figures the ``quarantine`` asset and the pipeline's metrics show, and the days a
re-drive covers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection, Engine, func, select, text

from etl_assets.warehouse.schema import STAGE_NORMALIZE, quarantine

REASONS_SHOWN = 20
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
    unresolved = quarantine.c.resolved_at.is_(None)
    with engine.connect() as conn:
        counts = conn.execute(
            select(func.count().filter(unresolved), func.count().filter(quarantine.c.resolved_at.is_not(None)))
        ).one()
        by_reason = conn.execute(
            select(quarantine.c.stage, quarantine.c.reason, func.count())
            .where(unresolved)
            .group_by(quarantine.c.stage, quarantine.c.reason)
            .order_by(func.count().desc(), quarantine.c.reason)
            .limit(REASONS_SHOWN)
        ).all()
        by_source = conn.execute(
            select(quarantine.c.source, func.count())
            .where(unresolved)
            .group_by(quarantine.c.source)
            .order_by(func.count().desc())
        ).all()
        days = conn.scalars(
            select(quarantine.c.event_day)
            .where(unresolved, quarantine.c.stage == STAGE_NORMALIZE, quarantine.c.event_day.is_not(None))
            .distinct()
            .order_by(quarantine.c.event_day)
        ).all()
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
