"""Retention in the warehouse: merged staging rows older than ETL_RETENTION_DAYS go; the facts stay consistent.

What is deleted: ``staging_events`` rows whose ``ingested_at`` is before the cutoff (midnight UTC, N days
before today) **and** that a merge of their day has read (``batch_days``; a row waiting for its merge is never
deleted, however old). Each day's rows are deleted holding the day's lock, so no merge of the day reads meanwhile. What is kept and how it stays true:

- ``events``, ``event_ledger``, ``quarantine`` (with its copy of each rejected record) and the daily tables are
  not touched. The ledger may then point at a staging row that is gone; the merge only compares its ids.
- ``raw_batches`` keeps every batch; ``staging_pruned_at`` marks those that lost staging rows (the batch
  reconciliation leaves them out: their staged count no longer adds up, by design) and
  ``archive_pruned_at`` those whose archived bytes were deleted (a replay refuses them with a clear message).
- ``retention_log`` names the event days that lost staging rows: the day reconciliation accepts an events row
  whose staged record is gone on such a day, and still fails on anything else.

Rows are deleted in id ranges, one short transaction each (run again after a transient error: deleting what
is already gone is a no-op), holding the merge lock so no merge of a day sees half of a deletion.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial

from sqlalchemy import Connection, Engine, func, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from etl_assets.transform.days import day_start
from etl_assets.warehouse.merge import lock_day
from etl_assets.warehouse.retries import in_transaction
from etl_assets.warehouse.schema import raw_batches, retention_log

DEFAULT_CHUNK_IDS = 50_000

_READ_BY_A_MERGE = (
    "EXISTS (SELECT 1 FROM batch_days b WHERE b.batch_id = s.batch_id AND b.day = s.event_day "
    "AND s.id <= b.merged_through)"
)
_EXPIRED = f"s.ingested_at < :cutoff AND {_READ_BY_A_MERGE}"
COUNT_EXPIRED_BY_DAY = text(f"SELECT event_day, count(*) FROM staging_events s WHERE {_EXPIRED} GROUP BY event_day")
COUNT_EXPIRED_BATCHES = text(f"SELECT count(DISTINCT batch_id) FROM staging_events s WHERE {_EXPIRED}")
COUNT_OLD_PENDING = text(
    f"SELECT count(*) FROM staging_events s WHERE s.ingested_at < :cutoff AND NOT {_READ_BY_A_MERGE}"
)
ID_RANGE_OF_DAY = text("SELECT min(id), max(id) FROM staging_events WHERE event_day = :day")
DELETE_EXPIRED_RANGE = text(
    "WITH gone AS (DELETE FROM staging_events s WHERE s.event_day = :day AND s.id >= :start AND s.id < :end AND "
    f"{_EXPIRED} RETURNING s.event_day, s.batch_id) "
    "SELECT event_day, batch_id, count(*) FROM gone GROUP BY event_day, batch_id"
)


def retention_cutoff(days: int, today: date | None = None) -> tuple[date, datetime]:
    """The first day kept and the moment it starts (midnight UTC): what is older than ``days`` days goes."""
    first_kept = (today or datetime.now(UTC).date()) - timedelta(days=days)
    return first_kept, day_start(first_kept)


@dataclass
class StagingPrune:
    """What pruning staging did (or, in a dry run, would do)."""

    rows: int = 0
    days: Counter[date] = field(default_factory=Counter)
    batches: int = 0
    old_pending_kept: int = 0


def prune_staging(
    engine: Engine, cutoff: datetime, *, dry_run: bool, chunk_ids: int = DEFAULT_CHUNK_IDS
) -> StagingPrune:
    """Delete (or count) the merged staging rows ingested before ``cutoff``; log their days, mark their batches."""
    pruned = StagingPrune()
    with engine.connect() as conn:
        pruned.old_pending_kept = conn.scalar(COUNT_OLD_PENDING, {"cutoff": cutoff})
        if dry_run:
            for day, rows in conn.execute(COUNT_EXPIRED_BY_DAY, {"cutoff": cutoff}):
                pruned.rows += rows
                if day is not None:
                    pruned.days[day] += rows
            pruned.batches = conn.scalar(COUNT_EXPIRED_BATCHES, {"cutoff": cutoff})
            return pruned
        expired_days = sorted(day for day, _ in conn.execute(COUNT_EXPIRED_BY_DAY, {"cutoff": cutoff}) if day)
    batches: set[str] = set()
    for day in expired_days:
        with engine.connect() as conn:
            lowest, highest = conn.execute(ID_RANGE_OF_DAY, {"day": day}).one()
        for start in range(lowest, highest + 1, chunk_ids):
            gone = in_transaction(
                engine,
                partial(_delete_range, day=day, start=start, end=start + chunk_ids, cutoff=cutoff),
                what="pruning staging rows",
            )
            for gone_day, batch_id, rows in gone:
                pruned.rows += rows
                batches.add(batch_id)
                pruned.days[gone_day] += rows
    pruned.batches = len(batches)
    return pruned


def _delete_range(
    conn: Connection, *, day: date, start: int, end: int, cutoff: datetime
) -> list[tuple[date, str, int]]:
    """Delete the expired rows of ``day`` with ids in [start, end), log them and mark their batches, in ``conn``'s
    transaction (holding the day's lock, so no merge of the day reads meanwhile); return (day, batch, rows)."""
    lock_day(conn, day)
    parameters = {"day": day, "start": start, "end": end, "cutoff": cutoff}
    gone = [(gone_day, batch_id, rows) for gone_day, batch_id, rows in conn.execute(DELETE_EXPIRED_RANGE, parameters)]
    days: Counter[date] = Counter()
    for day, _, rows in gone:
        if day is not None:
            days[day] += rows
    if days:
        statement = pg_insert(retention_log).values(
            [{"day": day, "staging_rows": rows} for day, rows in sorted(days.items())]
        )
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=["day"],
                set_={
                    "staging_rows": retention_log.c.staging_rows + statement.excluded.staging_rows,
                    "last_pruned_at": func.now(),
                },
            )
        )
    batch_ids = sorted({batch_id for _, batch_id, _ in gone})
    if batch_ids:
        conn.execute(
            update(raw_batches)
            .where(raw_batches.c.batch_id.in_(batch_ids), raw_batches.c.staging_pruned_at.is_(None))
            .values(staging_pruned_at=func.now())
        )
    return gone


def mark_archive_pruned(engine: Engine, keys: list[str]) -> int:
    """Mark the batches archived under ``keys`` as pruned (before the objects are deleted); how many were."""
    statement = (
        update(raw_batches)
        .where(raw_batches.c.archive_key.in_(keys), raw_batches.c.archive_pruned_at.is_(None))
        .values(archive_pruned_at=func.now())
    )
    return in_transaction(engine, lambda conn: conn.execute(statement).rowcount, what="marking pruned batches")
