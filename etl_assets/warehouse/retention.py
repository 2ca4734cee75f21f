"""Retention in the warehouse: merged staging rows older than ETL_RETENTION_DAYS go; the facts stay consistent.

What is deleted: ``staging_events`` rows whose ``ingested_at`` is before the cutoff (midnight UTC, N days
before today) **and** whose status is not ``pending`` (a row waiting for its merge is never deleted, however
old). What is kept and how it stays true:

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
from datetime import UTC, date, datetime, time, timedelta
from functools import partial

from sqlalchemy import Connection, Engine, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from etl_assets.warehouse.merge import MERGE_LOCK_KEY, TAKE_MERGE_LOCK
from etl_assets.warehouse.retries import in_transaction
from etl_assets.warehouse.schema import raw_batches, retention_log, staging_events

DEFAULT_CHUNK_IDS = 50_000

_EXPIRED = "ingested_at < :cutoff AND status <> 'pending'"
COUNT_EXPIRED_BY_DAY = text(f"SELECT event_day, count(*) FROM staging_events WHERE {_EXPIRED} GROUP BY event_day")
COUNT_EXPIRED_BATCHES = text(f"SELECT count(DISTINCT batch_id) FROM staging_events WHERE {_EXPIRED}")
COUNT_OLD_PENDING = text("SELECT count(*) FROM staging_events WHERE ingested_at < :cutoff AND status = 'pending'")
DELETE_EXPIRED_RANGE = text(
    "WITH gone AS (DELETE FROM staging_events WHERE id >= :start AND id < :end AND "
    f"{_EXPIRED} RETURNING event_day, batch_id) "
    "SELECT event_day, batch_id, count(*) FROM gone GROUP BY event_day, batch_id"
)


def retention_cutoff(days: int, today: date | None = None) -> tuple[date, datetime]:
    """The first day kept and the moment it starts (midnight UTC): what is older than ``days`` days goes."""
    first_kept = (today or datetime.now(UTC).date()) - timedelta(days=days)
    return first_kept, datetime.combine(first_kept, time(), UTC)


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
        lowest, highest = conn.execute(select(func.min(staging_events.c.id), func.max(staging_events.c.id))).one()
    if lowest is None:
        return pruned
    batches: set[str] = set()
    for start in range(lowest, highest + 1, chunk_ids):
        gone = in_transaction(
            engine,
            partial(_delete_range, start=start, end=start + chunk_ids, cutoff=cutoff),
            what="pruning staging rows",
        )
        for day, batch_id, rows in gone:
            pruned.rows += rows
            batches.add(batch_id)
            if day is not None:
                pruned.days[day] += rows
    pruned.batches = len(batches)
    return pruned


def _delete_range(conn: Connection, *, start: int, end: int, cutoff: datetime) -> list[tuple[date | None, str, int]]:
    """Delete the expired rows with ids in [start, end), log their days and mark their batches, in ``conn``'s
    transaction (holding the merge lock); return (day, batch, rows) of what went."""
    conn.execute(TAKE_MERGE_LOCK, {"key": MERGE_LOCK_KEY})
    gone = [
        (day, batch_id, rows)
        for day, batch_id, rows in conn.execute(DELETE_EXPIRED_RANGE, {"start": start, "end": end, "cutoff": cutoff})
    ]
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


def pruned_days(engine: Engine) -> set[date]:
    with engine.connect() as conn:
        return set(conn.scalars(select(retention_log.c.day)))
