"""Sources held back by the staging gate, per day: what the gate records and what the merge leaves out.

``staged_day_valid`` judges each source of a day on its own (``etl_assets.quality.day_checks``). A source over
its tolerance is *held*: a ``held_sources`` row names the day, the source and the reason, and the day's merge reads
none of that source's rows, so they stay pending ("still waiting" to reconciliation, never lost) while the
day's other sources merge. Every later judgement of the day replaces its holds: a source that now passes (a
fixed transform, rows re-sent) is released and its rows merge in that same run; a re-drive with
``merge_held_sources`` releases a source whatever its share, its rejected rows going to quarantine.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Connection, Engine, text

_HOLD_COLUMNS = "day, source, reason, rows_waiting, held_since, judged_at"
RELEASE_PASSED = text("DELETE FROM held_sources WHERE day = :day AND source <> ALL(:held)")
"""Releases the sources of the day a new judgement no longer holds."""
UPSERT_HOLD = text(
    "INSERT INTO held_sources (day, source, reason, rows_waiting) VALUES (:day, :source, :reason, :rows_waiting) "
    "ON CONFLICT (day, source) DO UPDATE SET reason = excluded.reason, rows_waiting = excluded.rows_waiting, "
    "judged_at = now()"
)
"""A hold already there keeps its ``held_since``."""
HOLDS_OF_DAY = text(f"SELECT {_HOLD_COLUMNS} FROM held_sources WHERE day = :day ORDER BY source")
RELEASE_DAY = text("DELETE FROM held_sources WHERE day = :day")
ALL_HOLDS = text(f"SELECT {_HOLD_COLUMNS} FROM held_sources ORDER BY day, source")
HOLDS_OF_DAYS = text(f"SELECT {_HOLD_COLUMNS} FROM held_sources WHERE day = ANY(:days) ORDER BY day, source")
HELD_BY_SOURCE = text("SELECT source, count(*), coalesce(sum(rows_waiting), 0) FROM held_sources GROUP BY source")


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
        conn.execute(RELEASE_PASSED, {"day": day, "held": [verdict.source for verdict in held]})
        if held:
            conn.execute(
                UPSERT_HOLD,
                [
                    {
                        "day": day,
                        "source": verdict.source,
                        "reason": verdict.reason,
                        "rows_waiting": verdict.rows_waiting,
                    }
                    for verdict in held
                ],
            )
        return [Hold(*row) for row in conn.execute(HOLDS_OF_DAY, {"day": day})]


def release_day(conn: Connection, day: date) -> None:
    """Release every source held on ``day`` (inside the caller's transaction: the merge that takes their rows)."""
    conn.execute(RELEASE_DAY, {"day": day})


def current_holds(engine: Engine, days: Collection[date] | None = None) -> list[Hold]:
    """Every hold (of ``days`` when given), by day and source."""
    with engine.connect() as conn:
        rows = conn.execute(ALL_HOLDS) if days is None else conn.execute(HOLDS_OF_DAYS, {"days": list(days)})
        return [Hold(*row) for row in rows]


def held_by_source(conn: Connection) -> list[tuple[str, int, int]]:
    """Per source, the days it is held back on and the rows waiting behind those holds."""
    return [(source, days, rows) for source, days, rows in conn.execute(HELD_BY_SOURCE)]


def describe_hold(hold: Hold) -> str:
    return f"{hold.source} on {hold.day.isoformat()} ({hold.rows_waiting:,} rows waiting): {hold.reason}"
