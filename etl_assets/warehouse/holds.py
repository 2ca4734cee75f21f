"""Sources held back by the staging gate, per day: what the gate records and what the merge leaves out.

``staged_day_valid`` judges each source of a day on its own (``etl_assets.warehouse.quality``). A source over its
tolerance is *held*: a ``held_sources`` row names the day, the source and the reason, and the day's merge reads
none of that source's rows, so they stay pending ("still waiting" to reconciliation, never lost) while the
day's other sources merge. Every later judgement of the day replaces its holds: a source that now passes (a
fixed transform, rows re-sent) is released and its rows merge in that same run; a re-drive with
``merge_held_sources`` releases a source whatever its share, its rejected rows going to quarantine.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Connection, Engine, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from etl_assets.warehouse.schema import held_sources


@dataclass(frozen=True)
class Hold:
    day: date
    source: str
    reason: str
    rows_waiting: int
    held_since: datetime
    judged_at: datetime


@dataclass(frozen=True)
class Verdict:
    """The gate's verdict on one source of one day: ``reason`` holds it back, ``None`` lets it merge."""

    source: str
    rows_waiting: int
    reason: str | None


def record_verdicts(engine: Engine, day: date, verdicts: list[Verdict]) -> list[Hold]:
    """Make ``day``'s holds the ``verdicts`` that hold a source (a hold already there keeps its ``held_since``);
    release every other source of the day. Returns the day's holds."""
    held = [verdict for verdict in verdicts if verdict.reason is not None]
    with engine.begin() as conn:
        conn.execute(
            delete(held_sources).where(
                held_sources.c.day == day, held_sources.c.source.not_in([verdict.source for verdict in held])
            )
        )
        if held:
            statement = pg_insert(held_sources).values(
                [
                    {
                        "day": day,
                        "source": verdict.source,
                        "reason": verdict.reason,
                        "rows_waiting": verdict.rows_waiting,
                    }
                    for verdict in held
                ]
            )
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["day", "source"],
                    set_={
                        "reason": statement.excluded.reason,
                        "rows_waiting": statement.excluded.rows_waiting,
                        "judged_at": func.now(),
                    },
                )
            )
        rows = conn.execute(select(held_sources).where(held_sources.c.day == day).order_by(held_sources.c.source))
        return [Hold(**row._mapping) for row in rows]


def release_day(conn: Connection, day: date) -> None:
    """Release every source held on ``day`` (inside the caller's transaction: the merge that takes their rows)."""
    conn.execute(delete(held_sources).where(held_sources.c.day == day))


def current_holds(engine: Engine, days: Collection[date] | None = None) -> list[Hold]:
    """Every hold (of ``days`` when given), by day and source."""
    query = select(held_sources).order_by(held_sources.c.day, held_sources.c.source)
    if days is not None:
        query = query.where(held_sources.c.day.in_(list(days)))
    with engine.connect() as conn:
        return [Hold(**row._mapping) for row in conn.execute(query)]


def describe_hold(hold: Hold) -> str:
    return f"{hold.source} on {hold.day.isoformat()} ({hold.rows_waiting:,} rows waiting): {hold.reason}"
