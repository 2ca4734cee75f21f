"""Reconciliation: every record that entered is in ``events`` once, in quarantine, or a skipped duplicate.

For a day, each staged record of the day is accounted for by exactly one of

- **in events**: it is the version the ledger holds for its ``event_id`` and that row is in ``events``;
- **duplicate skipped**: it merged, but another staged version of its ``event_id`` is the one kept;
- **quarantined**: the transform rejected it and its quarantine row is there, unresolved;
- **pending**: it waits for its day's merge (in flight, or its source held back by the staging gate; not a
  mismatch).

What is left is *unaccounted* (a row deleted from ``events`` behind the platform's back, a lost
quarantine row) and fails the check. The day's ``events`` partition is also counted on its own: a
row there that no staged record accounts for (written behind the platform's back) fails it too.

On a day the retention job pruned (``retention_log``), an ``events`` row whose ledger entry points at a
staging row that is gone is accounted for as *pruned*; every remaining staged record must still balance,
and a row with no ledger entry at all still fails. Batches that lost staging rows to retention are left out
of the batch reconciliation (their staged count no longer adds up to the ledger's, by design).

For a batch, the ledger's record count must equal its staged rows plus its records quarantined
before staging (no id, no timestamp, unreadable).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import Engine, bindparam, text

from etl_assets.warehouse.quality import day_bounds

RECONCILE_DAY_BY_BATCH = text(
    """
    SELECT s.batch_id,
           s.source,
           count(*) AS received,
           count(*) FILTER (WHERE s.status = 'pending') AS pending,
           count(*) FILTER (WHERE s.status = 'failed' AND q.id IS NOT NULL) AS quarantined,
           count(*) FILTER (WHERE s.status = 'succeeded' AND l.staging_id = s.id AND e.event_id IS NOT NULL)
               AS in_events,
           count(*) FILTER (WHERE s.status = 'succeeded' AND l.staging_id IS DISTINCT FROM s.id) AS duplicates,
           count(*) FILTER (WHERE s.status = 'pending' AND h.day IS NOT NULL) AS held
    FROM staging_events s
    -- joined whole, so the planner hashes it: quarantine has no index on staging_id, and a lookup per staged
    -- row would cost a day's rows times the quarantine's
    LEFT JOIN (
        SELECT DISTINCT staging_id AS id FROM quarantine WHERE stage = 'normalize' AND resolved_at IS NULL
    ) q ON q.id = s.id
    LEFT JOIN event_ledger l ON l.event_id = s.event_id
    LEFT JOIN events e ON e.event_id = l.event_id AND e.occurred_at = l.occurred_at
    LEFT JOIN held_sources h ON h.day = s.event_day AND h.source = s.source
    WHERE s.event_day = :day
    GROUP BY s.batch_id, s.source
    ORDER BY s.batch_id
    """
)
COUNT_EVENTS_OF_DAY = text("SELECT count(*) FROM events WHERE occurred_at >= :start AND occurred_at < :end")
DAY_WAS_PRUNED = text("SELECT EXISTS (SELECT 1 FROM retention_log WHERE day = :day)")
COUNT_EVENTS_WITH_PRUNED_RECORD = text(
    """
    SELECT count(*) FROM events e
    JOIN event_ledger l ON l.event_id = e.event_id AND l.occurred_at = e.occurred_at
    WHERE e.occurred_at >= :start AND e.occurred_at < :end
      AND NOT EXISTS (SELECT 1 FROM staging_events s WHERE s.id = l.staging_id)
    """
)
RECONCILE_BATCHES = text(
    """
    SELECT b.batch_id, b.source, b.record_count,
           (SELECT count(*) FROM staging_events s WHERE s.batch_id = b.batch_id) AS staged,
           (SELECT count(*) FROM quarantine q
             WHERE q.batch_id = b.batch_id AND q.stage = 'parse' AND q.resolved_at IS NULL) AS parse_quarantined
    FROM raw_batches b
    WHERE b.staged_at IS NOT NULL AND b.staging_pruned_at IS NULL
      AND b.received_at >= now() - make_interval(days => :days)
    ORDER BY b.received_at
    """
).bindparams(bindparam("days"))


SOURCE_FIGURES = ("received", "in_events", "quarantined", "duplicates", "pending", "held", "unaccounted")


@dataclass(frozen=True)
class BatchOfDay:
    batch_id: str
    source: str
    received: int
    pending: int
    quarantined: int
    in_events: int
    duplicates: int
    held: int = 0
    """Of the pending rows, those of a source the staging gate holds back on the day."""

    @property
    def unaccounted(self) -> int:
        return self.received - self.pending - self.quarantined - self.in_events - self.duplicates


@dataclass
class DayReconciliation:
    day: date
    events_rows: int
    batches: list[BatchOfDay] = field(default_factory=list)
    pruned_records: int = 0
    """Rows of the day's partition whose staged record the retention job deleted (0 on a day never pruned)."""

    def total(self, name: str) -> int:
        return sum(getattr(batch, name) for batch in self.batches)

    @property
    def unaccounted(self) -> int:
        return self.total("unaccounted")

    @property
    def events_without_record(self) -> int:
        """Rows of the day's partition that no staged record accounts for (negative: records missing from it)."""
        return self.events_rows - self.total("in_events") - self.pruned_records

    @property
    def balanced(self) -> bool:
        return self.unaccounted == 0 and self.events_without_record == 0

    def by_source(self) -> dict[str, dict[str, int]]:
        """The day's figures per source: received, in events, quarantined, duplicates, pending, held."""
        sources: dict[str, dict[str, int]] = {}
        for batch in self.batches:
            figures = sources.setdefault(batch.source, dict.fromkeys(SOURCE_FIGURES, 0))
            for name in SOURCE_FIGURES:
                figures[name] += getattr(batch, name)
        return sources

    @property
    def mismatched_batches(self) -> list[BatchOfDay]:
        return [batch for batch in self.batches if batch.unaccounted]


def reconcile_day(engine: Engine, day: date) -> DayReconciliation:
    start, end = day_bounds(day)
    with engine.connect() as conn:
        batches = [BatchOfDay(*row) for row in conn.execute(RECONCILE_DAY_BY_BATCH, {"day": day})]
        events_rows = conn.scalar(COUNT_EVENTS_OF_DAY, {"start": start, "end": end})
        pruned = (
            conn.scalar(COUNT_EVENTS_WITH_PRUNED_RECORD, {"start": start, "end": end})
            if conn.scalar(DAY_WAS_PRUNED, {"day": day})
            else 0
        )
    return DayReconciliation(day, events_rows, batches, pruned)


@dataclass(frozen=True)
class BatchReconciliation:
    batch_id: str
    source: str
    records: int
    staged: int
    parse_quarantined: int

    @property
    def unaccounted(self) -> int:
        return self.records - self.staged - self.parse_quarantined


def reconcile_batches(engine: Engine, within_days: int) -> list[BatchReconciliation]:
    """Every staged batch received in the last ``within_days`` days, with its ledger count and what holds it."""
    with engine.connect() as conn:
        return [BatchReconciliation(*row) for row in conn.execute(RECONCILE_BATCHES, {"days": within_days})]
