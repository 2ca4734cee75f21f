"""The merge of normalized staging rows into ``events``: exactly once by ``event_id``, across days.

One day's merge is one transaction (readers see the old day or the new one) and holds a lock that
serializes merges, because an event re-sent with another timestamp moves between day partitions.

The rule that keeps any order of runs, retries and replays ending in the same rows: of all staged
versions of an ``event_id``, the one that arrived last (highest ``staging_events.id``) is the one in
``events``. ``event_ledger`` remembers which version is in and on which day, so a merge

1. keeps the newest version per ``event_id`` among its input (older ones are duplicates),
2. drops versions older than the ledger's (superseded: a later file already sent this event),
3. deletes the row from its old day when the winning version moved to another day,
4. inserts or updates ``events``, touching a row only when its ``content_hash`` changed,
5. replaces the ``order_lines`` of exactly the rows it wrote (an order re-sent unchanged keeps its lines, a
   changed one gets its new lines instead of the old ones, a moved one moves them),
6. advances the ledger, marks the staging rows succeeded or failed, and quarantines the failures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from operator import attrgetter
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.dialects import postgresql

from etl_assets.transform import exact_json
from etl_assets.transform.normalize import AcceptedTimes, NormalizedEvent, RecordRejected, normalize
from etl_assets.transform.orders import OrderLine, order_lines
from etl_assets.transform.pii import PiiPolicy, pseudonymize_payload
from etl_assets.warehouse.copy import copy_rows
from etl_assets.warehouse.partitions import ensure_event_partitions
from etl_assets.warehouse.retries import in_transaction
from etl_assets.warehouse.schema import events
from etl_assets.warehouse.schema import order_lines as order_lines_table
from etl_assets.warehouse.staging import StagedRow

MERGE_LOCK_KEY = 0x6576656E7473  # "events": one merge into events at a time

EVENT_COLUMNS = tuple(column.name for column in events.columns if column.name != "loaded_at")
INCOMING_COLUMNS = ("staging_id", "rejection", *EVENT_COLUMNS, "lines")
LINE_COLUMNS = tuple(
    column.name
    for column in order_lines_table.columns
    if column.name not in ("event_id", "occurred_at", "day", "event_type", "order_id", "currency")
)
"""The columns of a line that come from the product (the others are the order event's)."""
UPDATABLE_COLUMNS = tuple(name for name in EVENT_COLUMNS if name not in ("event_id", "occurred_at"))


@dataclass(frozen=True, slots=True)
class StagedResult:
    """One staging row after the transform: its normalized event, or the reason it was rejected."""

    staging_id: int
    source: str
    batch_id: str
    ingested_at: datetime
    event: NormalizedEvent | None
    rejection: str | None = None
    lines: tuple[OrderLine, ...] = ()


@dataclass
class MergeCounts:
    received: int = 0
    rejected: int = 0
    duplicates: int = 0
    superseded: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    moved: int = 0
    lines: int = 0
    """Order lines written (of the events inserted, updated or moved)."""
    days: set[date] = field(default_factory=set)

    def add(self, other: MergeCounts) -> None:
        for name in (
            "received",
            "rejected",
            "duplicates",
            "superseded",
            "inserted",
            "updated",
            "unchanged",
            "moved",
            "lines",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.days |= other.days


def _column_value(name: str) -> Callable[[StagedResult], Any]:
    """How ``_incoming_row`` reads one column of ``events`` from a transform result (resolved once, not per row)."""
    if name == "properties":
        return lambda result: (
            None if result.event.properties is None else exact_json.dumps(result.event.properties).decode()
        )
    if name == "quality_tags":
        return lambda result: list(result.event.quality_tags)
    if name in StagedResult.__slots__:
        return attrgetter(name)
    return attrgetter(f"event.{name}")


_COLUMN_VALUES = tuple(_column_value(name) for name in EVENT_COLUMNS)
_REJECTED_COLUMNS = (None,) * len(EVENT_COLUMNS)


def _incoming_row(result: StagedResult) -> tuple:
    if result.event is None:
        return (result.staging_id, result.rejection or "rejected", *_REJECTED_COLUMNS, None)
    lines = exact_json.dumps([line.as_json() for line in result.lines]).decode() if result.lines else None
    return (result.staging_id, None, *(value(result) for value in _COLUMN_VALUES), lines)


_COLUMNS = ", ".join(EVENT_COLUMNS)
_ASSIGNMENTS = ", ".join(f"{name} = excluded.{name}" for name in UPDATABLE_COLUMNS)

TAKE_MERGE_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
CREATE_INCOMING = text(
    "CREATE TEMP TABLE incoming_results ON COMMIT DROP AS "
    f"SELECT NULL::bigint AS staging_id, NULL::text AS rejection, {_COLUMNS}, NULL::jsonb AS lines "
    "FROM events WITH NO DATA"
)
CREATE_WRITTEN = text("CREATE TEMP TABLE written_events (event_id text PRIMARY KEY) ON COMMIT DROP")
COUNT_REJECTED = text("SELECT count(*) FROM incoming_results WHERE rejection IS NOT NULL")
KEEP_NEWEST_VERSION = text(
    "CREATE TEMP TABLE candidates ON COMMIT DROP AS "
    f"SELECT DISTINCT ON (event_id) staging_id, {_COLUMNS}, lines FROM incoming_results "
    "WHERE rejection IS NULL ORDER BY event_id, staging_id DESC"
)
COUNT_CANDIDATES = text("SELECT count(*) FROM candidates")
DROP_SUPERSEDED = text(
    "DELETE FROM candidates c USING event_ledger l WHERE l.event_id = c.event_id AND l.staging_id > c.staging_id"
)
CANDIDATE_DAYS = text("SELECT DISTINCT (occurred_at AT TIME ZONE 'UTC')::date FROM candidates ORDER BY 1")
DELETE_MOVED = text(
    "DELETE FROM events e USING event_ledger l, candidates c "
    "WHERE l.event_id = c.event_id AND e.event_id = l.event_id "
    "AND e.occurred_at = l.occurred_at AND l.occurred_at <> c.occurred_at"
)
COUNT_NEW = text(
    "SELECT count(*) FROM candidates c WHERE NOT EXISTS "
    "(SELECT 1 FROM events e WHERE e.event_id = c.event_id AND e.occurred_at = c.occurred_at)"
)
UPSERT_CHANGED_EVENTS = text(
    f"WITH written AS (INSERT INTO events ({_COLUMNS}) SELECT {_COLUMNS} FROM candidates "
    f"ON CONFLICT (event_id, occurred_at) DO UPDATE SET {_ASSIGNMENTS}, loaded_at = now() "
    "WHERE events.content_hash IS DISTINCT FROM excluded.content_hash RETURNING event_id) "
    "INSERT INTO written_events SELECT event_id FROM written"
)
DELETE_REPLACED_LINES = text("DELETE FROM order_lines o USING written_events w WHERE o.event_id = w.event_id")
_LINE_RECORD = ", ".join(
    f"{name} {order_lines_table.c[name].type.compile(dialect=postgresql.dialect())}" for name in LINE_COLUMNS
)
INSERT_WRITTEN_LINES = text(
    "INSERT INTO order_lines (event_id, occurred_at, day, event_type, order_id, currency, "
    f"{', '.join(LINE_COLUMNS)}) "
    "SELECT c.event_id, c.occurred_at, (c.occurred_at AT TIME ZONE 'UTC')::date, c.event_type, c.order_id, "
    f"c.currency, {', '.join(f'l.{name}' for name in LINE_COLUMNS)} "
    "FROM candidates c JOIN written_events w ON w.event_id = c.event_id "
    f"CROSS JOIN LATERAL jsonb_to_recordset(c.lines) AS l({_LINE_RECORD}) "
    "WHERE c.lines IS NOT NULL"
)
ADVANCE_LEDGER = text(
    "INSERT INTO event_ledger (event_id, occurred_at, staging_id) "
    "SELECT event_id, occurred_at, staging_id FROM candidates "
    "ON CONFLICT (event_id) DO UPDATE SET occurred_at = excluded.occurred_at, staging_id = excluded.staging_id "
    "WHERE (event_ledger.occurred_at, event_ledger.staging_id) "
    "IS DISTINCT FROM (excluded.occurred_at, excluded.staging_id)"
)
MARK_STAGING_SUCCEEDED = text(
    "UPDATE staging_events s SET status = 'succeeded', attempts = s.attempts + 1, error = NULL, "
    "processed_at = now(), transform_version = :version FROM incoming_results i "
    "WHERE s.id = i.staging_id AND i.rejection IS NULL"
)
MARK_STAGING_FAILED = text(
    "UPDATE staging_events s SET status = 'failed', attempts = s.attempts + 1, error = r.rejection, "
    "processed_at = now(), transform_version = :version FROM incoming_results r "
    "WHERE s.id = r.staging_id AND r.rejection IS NOT NULL"
)
QUARANTINE_REJECTED = text(
    "INSERT INTO quarantine (source, batch_id, record_no, stage, reason, payload, staging_id, event_id, event_day) "
    "SELECT s.source, s.batch_id, s.record_no, 'normalize', r.rejection, s.payload, s.id, s.event_id, s.event_day "
    "FROM incoming_results r JOIN staging_events s ON s.id = r.staging_id WHERE r.rejection IS NOT NULL "
    "ON CONFLICT (batch_id, record_no, stage) DO UPDATE SET reason = excluded.reason, resolved_at = NULL"
)
RESOLVE_QUARANTINE = text(
    "UPDATE quarantine q SET resolved_at = now() FROM incoming_results i "
    "WHERE q.staging_id = i.staging_id AND i.rejection IS NULL AND q.stage = 'normalize' AND q.resolved_at IS NULL"
)


def merge_staged_results(conn: Connection, results: Iterable[StagedResult], transform_version: str) -> MergeCounts:
    """Merge staged results (usually one day's) in the caller's transaction; return what it did."""
    counts = MergeCounts()
    conn.execute(TAKE_MERGE_LOCK, {"key": MERGE_LOCK_KEY})
    conn.execute(CREATE_INCOMING)
    conn.execute(CREATE_WRITTEN)
    counts.received = copy_rows(conn, "incoming_results", INCOMING_COLUMNS, map(_incoming_row, results))
    counts.rejected = conn.scalar(COUNT_REJECTED)
    conn.execute(KEEP_NEWEST_VERSION)
    candidates = conn.scalar(COUNT_CANDIDATES)
    counts.duplicates = counts.received - counts.rejected - candidates
    counts.superseded = conn.execute(DROP_SUPERSEDED).rowcount
    days = list(conn.scalars(CANDIDATE_DAYS))
    counts.days = set(days)
    ensure_event_partitions(conn, days)
    counts.moved = conn.execute(DELETE_MOVED).rowcount
    counts.inserted = conn.scalar(COUNT_NEW)
    written = conn.execute(UPSERT_CHANGED_EVENTS).rowcount
    counts.updated = written - counts.inserted
    counts.unchanged = candidates - counts.superseded - written
    conn.execute(DELETE_REPLACED_LINES)
    counts.lines = conn.execute(INSERT_WRITTEN_LINES).rowcount
    conn.execute(ADVANCE_LEDGER)
    for outcome in (MARK_STAGING_SUCCEEDED, MARK_STAGING_FAILED):
        conn.execute(outcome, {"version": transform_version})
    conn.execute(QUARANTINE_REJECTED)
    conn.execute(RESOLVE_QUARANTINE)
    return counts


def merge_days(
    engine: Engine, days: Iterable[date], results_for: Callable[[date], Iterable[StagedResult]], transform_version: str
) -> MergeCounts:
    """Merge each day's staged results in a transaction of its own (the ``events`` asset's write).

    A transient error runs the day's transaction again on a new connection, asking ``results_for`` for the
    day's rows again: the rows a failed attempt consumed cannot be read twice.
    """
    total = MergeCounts()
    for day in days:

        def merge_day(conn: Connection, day: date = day) -> MergeCounts:
            results = results_for(day)
            try:
                return merge_staged_results(conn, results, transform_version)
            finally:
                close = getattr(results, "close", None)
                if callable(close):
                    close()  # a generator left half-read gives its reader's connection back now

        total.add(in_transaction(engine, merge_day, what=f"merging events of {day.isoformat()}"))
    return total


def normalize_staged(rows: Iterable[StagedRow], accepted: AcceptedTimes, *, pii: PiiPolicy) -> Iterator[StagedResult]:
    """Run the pure transform over staged rows; a rejection carries its reason instead of an event.

    Every payload is pseudonymized (``pii``) before ``normalize`` sees it, so no PII value reaches any column
    of ``events`` (nor a rejection reason); a row holding PII without a key raises ``PiiKeyMissing``, which
    fails the day's merge (its transaction rolls back) rather than load anything in clear.
    """
    for row in rows:
        try:
            event = normalize(pseudonymize_payload(exact_json.loads(row.payload_json), pii), accepted)
            lines = order_lines(event)
        except RecordRejected as error:
            yield StagedResult(row.staging_id, row.source, row.batch_id, row.ingested_at, None, str(error))
        else:
            yield StagedResult(row.staging_id, row.source, row.batch_id, row.ingested_at, event, lines=lines)
