"""The merge of staged rows into ``events``: exactly once by ``event_id``, across days, in SQL alone.

The transform ran at ingest (``etl_assets.transform.staged``): a staging row carries the columns ``events``
needs. A day's merge is one transaction of set-based statements; no row travels back to Python, and nothing is
written that did not change. It holds a lock on its day only, so merges of different days run at the same time.

The rule that keeps any order of runs, retries and replays ending in the same rows: of all staged versions of an
``event_id``, the one that arrived last (highest ``staging_events.id``) is the one in ``events``. ``event_ledger``
remembers which version is in and on which day, so a merge

1. reads the rows of its day that merges have not read yet (``batch_days``: per batch, the last staging id read;
   the rows of a source the staging gate holds back on the day are left for later) and advances that mark, per
   batch, never per row,
2. keeps the newest version per ``event_id`` among them (older ones are duplicates),
3. claims the ledger for each: an ``event_id`` whose ledger entry holds a newer version is superseded (a later
   file already sent this event); the ledger's row lock orders two merges that hold the same ``event_id`` on two
   days, and the entry keeps the day it held before (``previous_occurred_at``),
4. deletes the row from its old day when the winning version moved to another day,
5. inserts or updates ``events``, touching a row only when its ``content_hash`` changed, with the ``person_id``
   the identity graph is expected to give each row,
6. replaces the ``order_lines`` of exactly the rows it wrote (an order re-sent unchanged keeps its lines, a
   changed one gets its new lines instead of the old ones, a moved one moves them),
7. feeds the identity graph (users, traits, links: ``warehouse.identity``) under the graph's lock, moves the
   events of re-linked ids to their person and asks for the other days this changed to be rebuilt. Only this step
   waits for the merges of other days.

Rows the transform has not made with the current ``TRANSFORM_VERSION`` (a new version, rows staged without the PII
key), and every row on ``reprocess_all`` or rejected row on ``redrive``, are transformed again first, in the same
transaction (``refresh_day``): the one step that runs Python over rows, and only when asked to.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import Connection, Engine, text
from sqlalchemy.dialects import postgresql

from etl_assets.transform import TRANSFORM_VERSION, exact_json
from etl_assets.transform.normalize import AcceptedTimes
from etl_assets.transform.pii import PiiPolicy
from etl_assets.transform.staged import transform_record
from etl_assets.warehouse import identity
from etl_assets.warehouse.copy import copy_rows
from etl_assets.warehouse.holds import release_day
from etl_assets.warehouse.partitions import ensure_event_partitions
from etl_assets.warehouse.retries import in_transaction
from etl_assets.warehouse.schema import events
from etl_assets.warehouse.schema import order_lines as order_lines_table
from etl_assets.warehouse.staged_rows import TRANSFORMED_COLUMNS, transformed_values

DAY_LOCK_CLASS = 0x65766E74
"""The first key of a day's advisory lock ("evnt"); the second is the day's ordinal. One merge of a day at a time."""

EVENT_COLUMNS = tuple(column.name for column in events.columns if column.name != "loaded_at")
MERGED_COLUMNS = tuple(name for name in EVENT_COLUMNS if name != "person_id")
"""The columns a merge takes from the staged rows; ``person_id`` comes from the identity graph."""
LINE_COLUMNS = tuple(
    column.name
    for column in order_lines_table.columns
    if column.name not in ("event_id", "occurred_at", "day", "event_type", "order_id", "currency")
)
"""The columns of a line that come from the product (the others are the order event's)."""
UPDATABLE_COLUMNS = tuple(name for name in EVENT_COLUMNS if name not in ("event_id", "occurred_at"))

_COLUMNS = ", ".join(MERGED_COLUMNS)
_C_COLUMNS = ", ".join(f"c.{name}" for name in MERGED_COLUMNS)
_ASSIGNMENTS = ", ".join(f"{name} = excluded.{name}" for name in UPDATABLE_COLUMNS)
_CANDIDATE_COLUMNS = ", ".join(
    f"s.{name}" for name in (*MERGED_COLUMNS, "lines", *identity.IDENTITY_COLUMNS) if name != "event_id"
)

TAKE_DAY_LOCK = text("SELECT pg_advisory_xact_lock(:lock_class, :day_key)")
CREATE_MERGING = text(
    "CREATE TEMP TABLE merging ON COMMIT DROP AS "
    "SELECT b.batch_id, b.merged_through FROM batch_days b WHERE b.day = :day AND b.merged_rows < b.staged_rows "
    "AND (CAST(:include_held AS boolean) OR NOT EXISTS "
    "(SELECT 1 FROM held_sources h WHERE h.day = b.day AND h.source = b.source))"
)
"""The batches with rows of the day that no merge has read, but those of sources held back on the day."""
READ_CANDIDATES = text(
    "CREATE TEMP TABLE candidates ON COMMIT DROP AS "
    f"SELECT s.id AS staging_id, s.event_id, {_CANDIDATE_COLUMNS}, s.payload_digest, "
    "s.rejection IS NOT NULL AS rejected "
    "FROM staging_events s JOIN merging m ON m.batch_id = s.batch_id "
    "WHERE s.event_day = :day AND s.id > m.merged_through"
)
"""Every row of the day no merge has read yet, rejected ones included (they count as read)."""
ADVANCE_BATCH_DAYS = text(
    "WITH read AS ("
    "  SELECT c.batch_id, count(*) AS row_count, count(*) FILTER (WHERE c.rejected) AS rejected_count, "
    "  max(c.staging_id) AS last_id FROM candidates c GROUP BY c.batch_id"
    ") "
    "UPDATE batch_days b SET merged_rows = b.merged_rows + r.row_count, merged_through = r.last_id, "
    "merged_at = now() FROM read r WHERE b.batch_id = r.batch_id AND b.day = :day "
    "RETURNING r.row_count, r.rejected_count"
)
"""Marks what this merge read, batch by batch, and returns each batch's rows read and rejected among them.
``merged_rows`` adds to the row's latest version: rows of a batch staged while this merge ran keep the batch
waiting."""
DROP_REJECTED = text("DELETE FROM candidates WHERE rejected")
DROP_OLDER_VERSIONS = text(
    "DELETE FROM candidates c USING candidates newer "
    "WHERE newer.event_id = c.event_id AND newer.staging_id > c.staging_id"
)
"""Keeps the newest version of each ``event_id`` among the rows read (older ones are duplicates)."""
CREATE_WINNERS = text(
    "CREATE TEMP TABLE winners (event_id text, occurred_at timestamptz, "
    "previous_occurred_at timestamptz) ON COMMIT DROP"
)
CLAIM_LEDGER = text(
    "WITH claimed AS ("
    "  INSERT INTO event_ledger AS l (event_id, occurred_at, staging_id, payload_digest) "
    "  SELECT event_id, occurred_at, staging_id, payload_digest FROM candidates ORDER BY event_id "
    "  ON CONFLICT (event_id) DO UPDATE SET occurred_at = excluded.occurred_at, staging_id = excluded.staging_id, "
    "  previous_occurred_at = l.occurred_at, payload_digest = excluded.payload_digest "
    "  WHERE greatest(l.staging_id, l.resent_through) < excluded.staging_id "
    "  OR (l.staging_id = excluded.staging_id AND l.occurred_at <> excluded.occurred_at) "
    "  RETURNING l.event_id, l.occurred_at, l.previous_occurred_at"
    ") INSERT INTO winners SELECT * FROM claimed"
)
"""Claims each candidate's ledger entry unless it holds a newer version (staged, or re-sent unchanged after it:
``resent_through``); the claimed ones are the winners. In
``event_id`` order, so two merges that share ids lock them in the same order. An entry is locked even where it is
not updated."""
KEEP_HELD_VERSIONS = text(
    "INSERT INTO winners SELECT c.event_id, c.occurred_at, c.occurred_at FROM candidates c "
    "JOIN event_ledger l ON l.event_id = c.event_id AND l.staging_id = c.staging_id "
    "WHERE NOT EXISTS (SELECT 1 FROM winners w WHERE w.event_id = c.event_id)"
)
"""The candidates whose version the ledger holds already, at the same time (the same staging row read again: a
reprocess, a new transform, a replay) are winners too, unmoved; their ledger entries are left as they are."""
DROP_SUPERSEDED = text(
    "DELETE FROM candidates c WHERE NOT EXISTS (SELECT 1 FROM winners w WHERE w.event_id = c.event_id)"
)
ANALYZE_CANDIDATES = text("ANALYZE candidates (event_id, staging_id, user_id, group_id, lines)")
"""Temporary tables have no statistics until analyzed: without them the planner sorts a day's rows to join them.
Only the columns the merge joins, groups or filters on: sampling every column of the wide rows took longer than
copying them into the table."""
ANALYZE_WINNERS = text("ANALYZE winners")
CANDIDATE_DAYS = text("SELECT DISTINCT (occurred_at AT TIME ZONE 'UTC')::date FROM candidates ORDER BY 1")
DELETE_MOVED = text(
    "DELETE FROM events e USING winners w WHERE e.event_id = w.event_id AND e.occurred_at = w.previous_occurred_at "
    "AND w.previous_occurred_at <> w.occurred_at"
)
COUNT_MOVED = text("SELECT count(*) FROM winners WHERE previous_occurred_at <> occurred_at")
CREATE_WRITTEN = text("CREATE TEMP TABLE written_events (event_id text) ON COMMIT DROP")
_WRITE_EVENTS = (
    "WITH written AS ("
    f"  INSERT INTO events ({_COLUMNS}, person_id) SELECT {_C_COLUMNS}, {identity.PERSON_OF_CANDIDATE} "
    f"  FROM candidates c JOIN winners w ON w.event_id = c.event_id {identity.LINK_OF_CANDIDATE} "
    "  WHERE {which} {on_conflict} "
    "  RETURNING event_id, user_id, anonymous_id, person_id, occurred_at"
    "), marked AS (INSERT INTO written_events SELECT event_id FROM written"
    "), anonymous AS (INSERT INTO written_anonymous SELECT DISTINCT anonymous_id, person_id FROM written "
    "  WHERE user_id IS NULL) "
    "INSERT INTO written_persons (person_id, occurred_at) SELECT person_id, occurred_at FROM written"
)
INSERT_NEW_EVENTS = text(
    _WRITE_EVENTS.format(
        which="w.previous_occurred_at IS NULL OR w.previous_occurred_at <> w.occurred_at", on_conflict=""
    )
)
"""Inserts the winners ``events`` has no row for at their time, by the ledger: new ids, and moved ones. A plain
insert: the ledger has already said there is no row to conflict with. Their ids go to ``written_events`` (whose
order lines are replaced), their persons and times to ``written_persons``, and the persons of the rows with no
user id to ``written_anonymous`` (``warehouse.identity``)."""
UPSERT_KNOWN_EVENTS = text(
    _WRITE_EVENTS.format(
        which="w.previous_occurred_at = w.occurred_at",
        on_conflict=f"ON CONFLICT (event_id, occurred_at) DO UPDATE SET {_ASSIGNMENTS}, loaded_at = now() "
        "WHERE events.content_hash IS DISTINCT FROM excluded.content_hash",
    )
)
"""Updates the winners ``events`` has at their time already, when their content changed (a re-send writes
nothing); one missing there (deleted behind the platform's back) is written again."""
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

STALE_BATCHES = text(
    "SELECT batch_id FROM batch_days WHERE day = :day "
    "AND (CAST(:all_rows AS boolean) OR transform_version IS DISTINCT FROM :version) "
    "AND (CAST(:include_held AS boolean) OR NOT EXISTS "
    "(SELECT 1 FROM held_sources h WHERE h.day = batch_days.day AND h.source = batch_days.source))"
)
"""The batches of the day whose rows the current transform did not make (all of them on ``reprocess_all``)."""
REJECTED_BATCHES = text("SELECT DISTINCT batch_id FROM staging_events WHERE event_day = :day AND rejection IS NOT NULL")
ROWS_TO_REFRESH = text(
    "SELECT id, CAST(payload AS text) FROM staging_events "
    "WHERE event_day = :day AND batch_id = ANY(:batch_ids) AND (:all_rows OR rejection IS NOT NULL "
    "OR transform_version IS DISTINCT FROM :version) ORDER BY id"
)
CREATE_REFRESHED = text(
    "CREATE TEMP TABLE refreshed ON COMMIT DROP AS "
    f"SELECT id, {', '.join(TRANSFORMED_COLUMNS)} FROM staging_events WITH NO DATA"
)
UPDATE_REFRESHED = text(
    "UPDATE staging_events s SET transform_version = :version, payload_digest = CASE "
    "WHEN s.transform_version IS NOT DISTINCT FROM :version THEN s.payload_digest END, "
    f"{', '.join(f'{name} = r.{name}' for name in TRANSFORMED_COLUMNS)} FROM refreshed r WHERE s.id = r.id"
)
"""A row another transform version made loses its digest (its record was read back from ``payload``, not as
received, so no new digest can be made of it): a re-send of it is staged and merged as any record is. A row this
version made keeps it (a reprocess or a re-drive makes the same row of the same record again)."""
RESET_REFRESHED_BATCHES = text(
    "UPDATE batch_days SET transform_version = :version, merged_rows = 0, merged_through = 0 "
    "WHERE day = :day AND batch_id = ANY(:batch_ids)"
)
"""The refreshed batches' rows of the day are all read again by the merge that follows."""
QUARANTINE_REFRESHED = text(
    "INSERT INTO quarantine (source, batch_id, record_no, stage, reason, payload, staging_id, event_id, event_day) "
    "SELECT s.source, s.batch_id, s.record_no, 'normalize', s.rejection, s.payload, s.id, s.event_id, s.event_day "
    "FROM refreshed r JOIN staging_events s ON s.id = r.id WHERE s.rejection IS NOT NULL "
    "ON CONFLICT (batch_id, record_no, stage) DO UPDATE SET reason = excluded.reason, resolved_at = NULL"
)
RESOLVE_REFRESHED = text(
    "UPDATE quarantine q SET resolved_at = now() FROM refreshed r "
    "WHERE q.staging_id = r.id AND r.rejection IS NULL AND q.stage = 'normalize' AND q.resolved_at IS NULL"
)


@dataclass(frozen=True)
class MergeOptions:
    """How the ``events`` asset asks for a merge: the transform for rows that need it, and what to merge."""

    accepted: AcceptedTimes
    pii: PiiPolicy
    reprocess_all: bool = False
    """Transform every staged row of the day again and merge them all."""
    redrive: bool = False
    """Transform the day's rejected rows again (a fixed transform); those that pass now merge."""
    release_held: bool = False
    """Merge the rows of sources the staging gate holds back on the day too, and end the day's holds."""


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
    links_refused: int = 0
    persons_moved: int = 0
    refreshed: int = 0
    """Staged rows transformed again before the merge (a new transform version, a re-drive, a reprocess)."""
    days: set[date] = field(default_factory=set)
    seconds: dict[str, float] = field(default_factory=dict)
    """Seconds spent in each step, summed over the days (the bench's split of the merge)."""

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
            "links_refused",
            "persons_moved",
            "refreshed",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.days |= other.days
        for step, seconds in other.seconds.items():
            self.seconds[step] = self.seconds.get(step, 0.0) + seconds


class _Steps:
    """Times the merge's steps into ``counts.seconds``."""

    def __init__(self, counts: MergeCounts) -> None:
        self.counts = counts
        self.started = time.perf_counter()

    def done(self, step: str) -> None:
        now = time.perf_counter()
        self.counts.seconds[step] = self.counts.seconds.get(step, 0.0) + now - self.started
        self.started = now


def refresh_day(conn: Connection, day: date, options: MergeOptions, fetch_size: int = 5_000) -> int:
    """Transform again the staged rows of ``day`` that need it, in the caller's transaction; returns how many.

    Raises ``PiiKeyMissing`` when a row holds PII and no key is set: the transaction rolls back, nothing loads.
    """
    parameters = {
        "day": day,
        "version": TRANSFORM_VERSION,
        "all_rows": options.reprocess_all,
        "include_held": options.release_held,
    }
    batch_ids = set(conn.scalars(STALE_BATCHES, parameters))
    if options.redrive:
        batch_ids |= set(conn.scalars(REJECTED_BATCHES, {"day": day}))
    if not batch_ids:
        return 0
    parameters["batch_ids"] = sorted(batch_ids)
    conn.execute(CREATE_REFRESHED)
    refreshed = 0
    result = conn.execute(
        ROWS_TO_REFRESH, parameters, execution_options={"stream_results": True, "yield_per": fetch_size}
    )
    for rows in result.partitions():
        refreshed += copy_rows(
            conn,
            "refreshed",
            ("id", *TRANSFORMED_COLUMNS),
            [
                (
                    staging_id,
                    *transformed_values(transform_record(exact_json.loads(payload), options.accepted, options.pii)),
                )
                for staging_id, payload in rows
            ],
        )
    conn.execute(UPDATE_REFRESHED, parameters)
    conn.execute(RESET_REFRESHED_BATCHES, parameters)
    conn.execute(QUARANTINE_REFRESHED)
    conn.execute(RESOLVE_REFRESHED)
    return refreshed


def lock_day(conn: Connection, day: date) -> None:
    """Wait for, then hold until the transaction ends, the lock of ``day``'s staged rows: the day's merge holds it,
    and so does whatever deletes or rewrites rows a merge may be reading (retention)."""
    conn.execute(TAKE_DAY_LOCK, {"lock_class": DAY_LOCK_CLASS, "day_key": day.toordinal()})


def merge_day(conn: Connection, day: date, options: MergeOptions) -> MergeCounts:
    """Merge ``day``'s waiting staged rows in the caller's transaction; return what it did."""
    counts = MergeCounts()
    steps = _Steps(counts)
    lock_day(conn, day)
    if options.release_held:
        release_day(conn, day)
    counts.refreshed = refresh_day(conn, day, options)
    steps.done("transform again")
    conn.execute(CREATE_MERGING, {"day": day, "include_held": options.release_held})
    conn.execute(READ_CANDIDATES, {"day": day})
    conn.execute(ANALYZE_CANDIDATES)
    for row_count, rejected_count in conn.execute(ADVANCE_BATCH_DAYS, {"day": day}):
        counts.received += row_count
        counts.rejected += rejected_count
    if not counts.received:
        return counts
    steps.done("read")
    if counts.rejected:
        conn.execute(DROP_REJECTED)
    counts.duplicates = conn.execute(DROP_OLDER_VERSIONS).rowcount
    candidates = counts.received - counts.rejected - counts.duplicates
    steps.done("newest versions")
    conn.execute(CREATE_WINNERS)
    winners = conn.execute(CLAIM_LEDGER).rowcount
    if winners < candidates:
        winners += conn.execute(KEEP_HELD_VERSIONS).rowcount
    conn.execute(ANALYZE_WINNERS)
    counts.superseded = candidates - winners
    if counts.superseded:
        conn.execute(DROP_SUPERSEDED)
    steps.done("ledger")
    days = list(conn.scalars(CANDIDATE_DAYS))
    counts.days = set(days)
    ensure_event_partitions(conn, days)
    if conn.scalar(COUNT_MOVED):
        counts.moved = conn.execute(DELETE_MOVED).rowcount
    steps.done("moves")
    identity.expect_links(conn)
    steps.done("expected links")
    conn.execute(CREATE_WRITTEN)
    counts.inserted = conn.execute(INSERT_NEW_EVENTS).rowcount
    counts.updated = conn.execute(UPSERT_KNOWN_EVENTS).rowcount
    counts.unchanged = winners - counts.inserted - counts.updated
    steps.done("upsert")
    conn.execute(DELETE_REPLACED_LINES)
    counts.lines = conn.execute(INSERT_WRITTEN_LINES).rowcount
    steps.done("order lines")
    links = identity.link_written(conn, days)
    counts.links_refused, counts.persons_moved = links.links_refused, links.persons_moved
    steps.done("identity")
    return counts


def merge_days(engine: Engine, days: Iterable[date], options: MergeOptions, *, at_once: int = 1) -> MergeCounts:
    """Merge each day in a transaction of its own (the ``events`` asset's write), ``at_once`` days at the same time
    (each on a connection of its own; a day's lock keeps every other merge of it out); a transient error runs the
    day's transaction again on a new connection."""

    def merge_one(day: date) -> MergeCounts:
        return in_transaction(
            engine, lambda conn: merge_day(conn, day, options), what=f"merging events of {day.isoformat()}"
        )

    total = MergeCounts()
    days = list(days)
    if at_once > 1 and len(days) > 1:
        with ThreadPoolExecutor(max_workers=min(at_once, len(days)), thread_name_prefix="merge") as pool:
            for counts in pool.map(merge_one, days):
                total.add(counts)
    else:
        for day in days:
            total.add(merge_one(day))
    return total
