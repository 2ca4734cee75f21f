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

Order lines reconcile with their events: each order event of the day whose staged record is still there has
exactly the lines its ``products`` list has (one for a flat order with a product of its own, none for a whole
refund), and no line of the day belongs to an event that is not in ``events`` (a line left behind by an event
that changed or moved). ``(event_id, line_number)`` is the table's key, so no line is there twice.

For a batch, the ledger's record count must equal its staged rows plus its records quarantined
before staging (no id, no timestamp, unreadable) plus its records ingest found in ``events`` unchanged (re-sent:
claimed in the event ledger, not staged again). A batch that brought bytes must have brought at least one
record (a file that could not be read has one quarantine row that says why), and a batch entered in the ledger
must have been staged within ``UNSTAGED_GRACE_MINUTES``: otherwise bytes entered and nothing says what became
of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import Engine, bindparam, text

from etl_assets.transform.days import day_bounds
from etl_assets.transform.vocabulary import ORDER_EVENT_TYPES
from etl_assets.warehouse.schema import FAILED, PENDING, STAGE_NORMALIZE, STAGE_PARSE, SUCCEEDED

RECONCILE_DAY_BY_BATCH = text(
    f"""
    SELECT s.batch_id,
           s.source,
           count(*) AS received,
           count(*) FILTER (WHERE s.status = '{PENDING}') AS pending,
           count(*) FILTER (WHERE s.status = '{FAILED}' AND q.id IS NOT NULL) AS quarantined,
           count(*) FILTER (WHERE s.status = '{SUCCEEDED}' AND l.staging_id = s.id AND e.event_id IS NOT NULL)
               AS in_events,
           count(*) FILTER (WHERE s.status = '{SUCCEEDED}' AND l.staging_id IS DISTINCT FROM s.id) AS duplicates,
           count(*) FILTER (WHERE s.status = '{PENDING}' AND h.day IS NOT NULL) AS held
    FROM staging_status s
    -- joined whole, so the planner hashes it: quarantine has no index on staging_id, and a lookup per staged
    -- row would cost a day's rows times the quarantine's
    LEFT JOIN (
        SELECT DISTINCT staging_id AS id FROM quarantine WHERE stage = '{STAGE_NORMALIZE}' AND resolved_at IS NULL
    ) q ON q.id = s.id
    LEFT JOIN event_ledger l ON l.event_id = s.event_id
    LEFT JOIN events e ON e.event_id = l.event_id AND e.occurred_at = l.occurred_at
    LEFT JOIN held_sources h ON h.day = s.event_day AND h.source = s.source
    WHERE s.event_day = :day
    GROUP BY s.batch_id, s.source
    ORDER BY s.batch_id
    """
)
ORDER_EVENTS_WITH_OTHER_LINES = text(
    f"""
    SELECT count(*) FROM events e
    JOIN event_ledger l ON l.event_id = e.event_id AND l.occurred_at = e.occurred_at
    JOIN staging_events s ON s.id = l.staging_id
    WHERE e.occurred_at >= :start AND e.occurred_at < :end AND e.event_type IN {ORDER_EVENT_TYPES!r}
      AND (SELECT count(*) FROM order_lines o WHERE o.event_id = e.event_id AND o.occurred_at = e.occurred_at)
          <> CASE WHEN jsonb_typeof(e.properties -> 'products') = 'array'
                       AND jsonb_array_length(e.properties -> 'products') > 0
                  THEN jsonb_array_length(e.properties -> 'products')
                  WHEN e.product_id IS NOT NULL THEN 1 ELSE 0 END
    """
)
"""Order events whose lines are not one per product sent (those whose record retention pruned are left out: a
day merged before lines existed cannot be reprocessed once its records are gone)."""
LINES_WITHOUT_EVENT = text(
    """
    SELECT count(*) FROM order_lines o WHERE o.day = :day
      AND NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = o.event_id AND e.occurred_at = o.occurred_at)
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
UNSTAGED_GRACE_MINUTES = 60
"""How long a batch may sit in the ledger unstaged (its run retrying) before it counts as unaccounted for."""
RECONCILE_BATCHES = text(
    f"""
    SELECT b.batch_id, b.source, coalesce(b.record_count, 0),
           (SELECT count(*) FROM staging_events s WHERE s.batch_id = b.batch_id) AS staged,
           (SELECT count(*) FROM quarantine q
             WHERE q.batch_id = b.batch_id AND q.stage = '{STAGE_PARSE}' AND q.resolved_at IS NULL) AS parse_quarantined,
           b.byte_count,
           b.staged_at IS NOT NULL AS closed,
           b.resent_count AS resent
    FROM raw_batches b
    WHERE b.staging_pruned_at IS NULL
      AND b.received_at >= now() - make_interval(days => :days)
      AND (b.staged_at IS NOT NULL OR b.received_at < now() - make_interval(mins => :grace_minutes))
    ORDER BY b.received_at
    """
).bindparams(bindparam("days"), bindparam("grace_minutes"))


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
    orders_with_other_lines: int = 0
    """Order events of the day whose lines in ``order_lines`` are not one per product they were sent with."""
    lines_without_event: int = 0
    """Rows of ``order_lines`` of the day whose event is not in ``events``."""

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
        return (
            self.unaccounted == 0
            and self.events_without_record == 0
            and self.orders_with_other_lines == 0
            and self.lines_without_event == 0
        )

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
        other_lines = conn.scalar(ORDER_EVENTS_WITH_OTHER_LINES, {"start": start, "end": end})
        orphan_lines = conn.scalar(LINES_WITHOUT_EVENT, {"day": day})
    return DayReconciliation(day, events_rows, batches, pruned, other_lines, orphan_lines)


@dataclass(frozen=True)
class BatchReconciliation:
    batch_id: str
    source: str
    records: int
    staged: int
    parse_quarantined: int

    byte_count: int = 0
    closed: bool = True
    """Whether staging the batch finished (``staged_at`` is set)."""
    resent: int = 0
    """Records already in ``events`` unchanged, not staged again."""

    @property
    def unaccounted(self) -> int:
        return self.records - self.staged - self.parse_quarantined - self.resent

    @property
    def problem(self) -> str | None:
        """Why the batch is not accounted for, or None when it is."""
        if not self.closed:
            return f"entered more than {UNSTAGED_GRACE_MINUTES} minutes ago and never staged"
        if self.byte_count > 0 and self.records == 0:
            return f"{self.byte_count:,} bytes and no record, no quarantine row saying why"
        if self.unaccounted:
            return f"{self.unaccounted:,} records neither staged, quarantined nor already in events"
        return None


def reconcile_batches(engine: Engine, within_days: int) -> list[BatchReconciliation]:
    """Every batch received in the last ``within_days`` days that was staged or should have been by now, with its
    ledger count and what holds it."""
    with engine.connect() as conn:
        rows = conn.execute(RECONCILE_BATCHES, {"days": within_days, "grace_minutes": UNSTAGED_GRACE_MINUTES})
        return [BatchReconciliation(*row) for row in rows]
