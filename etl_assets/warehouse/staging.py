"""Writing parsed records into ``staging_events`` (and the unparseable ones into ``quarantine``).

Records arrive as a stream; every ``chunk_size`` of them commit in a transaction of their own, so a
crash loses at most the chunk in flight and memory holds one chunk. A batch seen for the first time
is COPYed straight into staging (the fast path); a batch that already has rows (a re-run after a
crash, a replay) goes through a temporary table and ``ON CONFLICT (batch_id, record_no)``, so a
record is staged once however often its batch is read.

A transaction that a transient error ends (a serialization failure, a deadlock, a lost connection) is
run again from the start on a new connection (``etl_assets.warehouse.retries``): a chunk is a list, so
it can be staged again, and a retried chunk goes through ``ON CONFLICT`` in case its first commit did
reach the server before the connection was lost.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import chain, islice
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Text, cast, exists, false, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from etl_assets.transform.normalize import AcceptedTimes, RecordRejected, event_key
from etl_assets.transform.records import ParsedRecord, RejectedRecord
from etl_assets.warehouse.copy import copy_rows, create_temp_table
from etl_assets.warehouse.holds import not_held
from etl_assets.warehouse.retries import in_transaction
from etl_assets.warehouse.schema import quarantine, raw_batches, staging_events

STAGING_COLUMNS = ("batch_id", "record_no", "event_id", "event_day", "source", "payload")
QUARANTINE_COLUMNS = ("source", "batch_id", "record_no", "stage", "reason", "raw_record", "payload", "event_id")
DEFAULT_CHUNK_SIZE = 20_000


@dataclass
class StagingCounts:
    """What staging a batch did: the figures a materialization shows and reconciliation adds up."""

    records: int = 0
    staged: int = 0
    quarantined: int = 0
    already_staged: int = 0
    days: Counter[date] = field(default_factory=Counter)

    @property
    def days_touched(self) -> list[date]:
        return sorted(self.days)

    def add(self, other: StagingCounts) -> None:
        self.records += other.records
        self.staged += other.staged
        self.quarantined += other.quarantined
        self.already_staged += other.already_staged
        self.days.update(other.days)


class _Chunk:
    """Up to ``size`` records of a batch, read while they are staged and kept, so a retried transaction stages
    the same records again.

    The first attempt iterates the chunk: each record is read from the file only when COPY is ready for it, so
    parsing in Python and storing in PostgreSQL overlap. A retry takes ``records()``: what the first attempt
    read, and the rest of the chunk.
    """

    def __init__(self, source: Iterator[ParsedRecord | RejectedRecord], size: int) -> None:
        self._unread = islice(source, size)
        self._read: list[ParsedRecord | RejectedRecord] = []

    def __iter__(self) -> Iterator[ParsedRecord | RejectedRecord]:
        for record in self._unread:
            self._read.append(record)
            yield record

    def records(self) -> list[ParsedRecord | RejectedRecord]:
        self._read.extend(self._unread)
        return self._read


def _chunks(records: Iterable[ParsedRecord | RejectedRecord], size: int) -> Iterator[_Chunk]:
    iterator = iter(records)
    for first in iterator:
        yield _Chunk(chain((first,), iterator), size)


def _split(
    chunk: Iterable[ParsedRecord | RejectedRecord],
    batch_id: str,
    source: str,
    accepted: AcceptedTimes,
    counts: StagingCounts,
    rejected: list[tuple],
) -> Iterator[tuple]:
    """The staging rows of ``chunk``, as they are read; what cannot be keyed goes to ``rejected``."""
    for record in chunk:
        counts.records += 1
        if isinstance(record, RejectedRecord):
            rejected.append((source, batch_id, record.record_no, "parse", record.reason, record.raw, None, None))
            continue
        try:
            key = event_key(record.payload, accepted)
        except RecordRejected as error:
            rejected.append(
                (
                    source,
                    batch_id,
                    record.record_no,
                    "parse",
                    str(error),
                    record.json_text.encode(),
                    record.json_text,
                    None,
                )
            )
            continue
        day = key.occurred_at.date()
        counts.days[day] += 1
        yield (batch_id, record.record_no, key.event_id, day, source, record.json_text)


def stage_records(
    engine: Engine,
    batch_id: str,
    source: str,
    records: Iterable[ParsedRecord | RejectedRecord],
    accepted: AcceptedTimes,
    *,
    replay: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> StagingCounts:
    """Stage ``records`` of one batch; a record without a usable id or timestamp is quarantined at once.

    ``replay`` re-stages a batch that was staged before (after a change to parsing or normalizing):
    its rows take the new payload and key, go back to ``pending`` and take the time of the replay as
    ``ingested_at`` (so the sensor sees new work); parse rejections that now parse are marked resolved.
    """
    counts = StagingCounts()
    fresh = in_transaction(
        engine,
        lambda conn: not conn.scalar(select(exists().where(staging_events.c.batch_id == batch_id))),
        what=f"looking up batch {batch_id}",
    )
    for chunk in _chunks(records, chunk_size):
        counts.add(_stage_chunk_retrying(engine, chunk, batch_id, source, accepted, fresh=fresh, replay=replay))
    in_transaction(engine, lambda conn: _close_batch(conn, batch_id, counts), what=f"closing batch {batch_id}")
    return counts


def _stage_chunk_retrying(
    engine: Engine,
    chunk: _Chunk,
    batch_id: str,
    source: str,
    accepted: AcceptedTimes,
    *,
    fresh: bool,
    replay: bool,
) -> StagingCounts:
    """Stage one chunk in a transaction of its own, run again from the start after a transient error."""
    attempts = 0

    def attempt(conn: Connection) -> StagingCounts:
        nonlocal attempts
        attempts += 1
        counts = StagingCounts()
        records = chunk if attempts == 1 else chunk.records()
        # A retry may follow a commit that reached the server though its acknowledgement was lost with the
        # connection: it goes through ON CONFLICT, never a second COPY of the same records.
        _stage_chunk(conn, records, batch_id, source, accepted, counts, fresh=fresh and attempts == 1, replay=replay)
        return counts

    return in_transaction(engine, attempt, what=f"staging a chunk of batch {batch_id}")


def _stage_chunk(
    conn: Connection,
    chunk: Iterable[ParsedRecord | RejectedRecord],
    batch_id: str,
    source: str,
    accepted: AcceptedTimes,
    counts: StagingCounts,
    *,
    fresh: bool,
    replay: bool,
) -> None:
    """Stage one chunk inside the caller's transaction: COPY when the batch is new (streamed, record by record),
    else insert what is missing."""
    rejected: list[tuple] = []
    rows = _split(chunk, batch_id, source, accepted, counts, rejected)
    if fresh:
        counts.staged += copy_rows(conn, staging_events.name, STAGING_COLUMNS, rows)
    else:
        staged = list(rows)
        written = _merge_staging_rows(conn, staged, replay)
        counts.staged += written
        counts.already_staged += len(staged) - written
        if replay:
            _resolve_parse_quarantine(conn, batch_id, [row[1] for row in staged])
    if rejected:
        counts.quarantined += _quarantine_rows(conn, rejected, replay)


def _close_batch(conn: Connection, batch_id: str, counts: StagingCounts) -> None:
    """Record in the ledger how many records the batch had and how many could not be parsed."""
    conn.execute(
        update(raw_batches)
        .where(raw_batches.c.batch_id == batch_id)
        .values(
            record_count=counts.records,
            quarantined_count=_parse_quarantine_count(conn, batch_id),
            staged_at=func.now(),
        )
    )


@dataclass(frozen=True)
class BatchEntry:
    """A batch's row in the ``raw_batches`` ledger: what entered, from where, archived where, its checksum."""

    batch_id: str
    source: str
    source_uri: str
    archive_key: str | None
    sha256: str
    byte_count: int


def stage_batch(
    engine: Engine,
    entry: BatchEntry,
    records: Iterable[ParsedRecord | RejectedRecord],
    accepted: AcceptedTimes,
    *,
    before_commit: Callable[[Connection], None] | None = None,
    retry_seconds: float | None = None,
) -> StagingCounts:
    """Stage a small batch (an API page, a collector flush) in one transaction with its ledger row.

    All or nothing: the ledger row, the staging rows, the parse quarantine and whatever ``before_commit``
    writes (a pull source's cursor) commit together, so a crash leaves the batch either wholly staged or
    not at all. Staging the same batch id again adds only records it did not have. A transient error runs
    the whole transaction again (``before_commit`` included, so it must be idempotent), for up to
    ``retry_seconds`` (the retries' default budget unless given).
    """
    chunk = list(records)  # materialized: a retried transaction stages the same records again

    def attempt(conn: Connection) -> StagingCounts:
        counts = StagingCounts()
        fresh = _enter_batch(conn, entry)
        _stage_chunk(conn, chunk, entry.batch_id, entry.source, accepted, counts, fresh=fresh, replay=False)
        _close_batch(conn, entry.batch_id, counts)
        if before_commit is not None:
            before_commit(conn)
        return counts

    return in_transaction(engine, attempt, what=f"staging batch {entry.batch_id}", max_seconds=retry_seconds)


def _merge_staging_rows(conn: Any, rows: list[tuple], replay: bool) -> int:
    incoming = create_temp_table(conn, "incoming_staging", staging_events, STAGING_COLUMNS)
    copy_rows(conn, incoming.name, STAGING_COLUMNS, rows)
    statement = pg_insert(staging_events).from_select(list(STAGING_COLUMNS), select(incoming))
    if replay:
        excluded = statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=["batch_id", "record_no"],
            set_={
                "payload": excluded.payload,
                "event_id": excluded.event_id,
                "event_day": excluded.event_day,
                "status": "pending",
                "error": None,
                "ingested_at": func.now(),
            },
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=["batch_id", "record_no"])
    return conn.execute(statement).rowcount


def _quarantine_rows(conn: Any, rows: list[tuple], replay: bool) -> int:
    statement = pg_insert(quarantine).values([dict(zip(QUARANTINE_COLUMNS, row, strict=True)) for row in rows])
    if replay:
        statement = statement.on_conflict_do_update(
            index_elements=["batch_id", "record_no", "stage"],
            set_={"reason": statement.excluded.reason, "resolved_at": None},
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=["batch_id", "record_no", "stage"])
    return conn.execute(statement).rowcount


def _resolve_parse_quarantine(conn: Any, batch_id: str, record_nos: list[int]) -> None:
    conn.execute(
        update(quarantine)
        .where(
            quarantine.c.batch_id == batch_id,
            quarantine.c.stage == "parse",
            quarantine.c.record_no.in_(record_nos),
            quarantine.c.resolved_at.is_(None),
        )
        .values(resolved_at=func.now())
    )


def _parse_quarantine_count(conn: Any, batch_id: str) -> int:
    return conn.scalar(
        select(func.count()).where(
            quarantine.c.batch_id == batch_id, quarantine.c.stage == "parse", quarantine.c.resolved_at.is_(None)
        )
    )


def record_batch(
    engine: Engine,
    *,
    batch_id: str,
    source: str,
    source_uri: str,
    archive_key: str | None,
    sha256: str,
    byte_count: int,
) -> bool:
    """Enter a batch into the ``raw_batches`` ledger; False when it was there already (same id, same bytes)."""
    entry = BatchEntry(batch_id, source, source_uri, archive_key, sha256, byte_count)
    with engine.begin() as conn:
        return _enter_batch(conn, entry)


def _enter_batch(conn: Connection, entry: BatchEntry) -> bool:
    result = conn.execute(
        pg_insert(raw_batches)
        .values(
            batch_id=entry.batch_id,
            source=entry.source,
            source_uri=entry.source_uri,
            archive_key=entry.archive_key,
            sha256=entry.sha256,
            byte_count=entry.byte_count,
        )
        .on_conflict_do_nothing(index_elements=["batch_id"])
    )
    return result.rowcount == 1


def find_batch(engine: Engine, batch_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(raw_batches).where(raw_batches.c.batch_id == batch_id)).mappings().first()
    return dict(row) if row else None


@dataclass(frozen=True, slots=True)
class StagedRow:
    staging_id: int
    source: str
    batch_id: str
    ingested_at: datetime
    payload_json: str


def waiting_to_merge(transform_version: str) -> ColumnElement[bool]:
    """Staging rows the next merge of their day reads: pending, or processed by another transform version."""
    return or_(
        staging_events.c.status == "pending", staging_events.c.transform_version.is_distinct_from(transform_version)
    )


class StagedRowsReader:
    """Reads a day's staging rows with a server-side cursor, so a day of any size streams in bounded memory."""

    def __init__(self, engine: Engine, fetch_size: int = 10_000) -> None:
        self.engine = engine
        self.fetch_size = fetch_size

    def rows(
        self,
        day: date,
        transform_version: str,
        *,
        reprocess_all: bool = False,
        include_failed: bool = False,
        include_held: bool = False,
    ) -> Iterator[StagedRow]:
        """The rows of ``day`` still to merge: pending ones and those a different transform version processed
        (with ``include_failed`` also those the transform rejected, to re-drive them from quarantine; all of
        the day's rows with ``reprocess_all``), in arrival order. The rows of sources the staging gate holds
        back on ``day`` are left out (they stay pending) unless ``include_held``."""
        query = (
            select(
                staging_events.c.id,
                staging_events.c.source,
                staging_events.c.batch_id,
                staging_events.c.ingested_at,
                cast(staging_events.c.payload, Text),
            )
            .where(staging_events.c.event_day == day)
            .order_by(staging_events.c.id)
        )
        if not reprocess_all:
            redrive = staging_events.c.status == "failed" if include_failed else false()
            query = query.where(or_(waiting_to_merge(transform_version), redrive))
        if not include_held:
            query = query.where(not_held())
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=self.fetch_size).execute(query)
            for row in result:
                yield StagedRow(*row)


@dataclass(frozen=True)
class PendingDay:
    day: date
    rows: int
    newest_id: int
    last_staged_at: datetime

    @property
    def version(self) -> str:
        """Changes whenever rows of the day become pending: new rows (a higher id) or re-staged ones (a later time)."""
        return f"{self.newest_id}.{self.last_staged_at.timestamp():.6f}"


def pending_days(engine: Engine) -> list[PendingDay]:
    """Days that have staging rows waiting for their merge into ``events``."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                staging_events.c.event_day,
                func.count(),
                func.max(staging_events.c.id),
                func.max(staging_events.c.ingested_at),
            )
            .where(staging_events.c.status == "pending", staging_events.c.event_day.is_not(None))
            .group_by(staging_events.c.event_day)
            .order_by(staging_events.c.event_day)
        )
        return [PendingDay(*row) for row in rows]


def known_batch_ids(engine: Engine, batch_ids: list[str]) -> set[str]:
    """Which of ``batch_ids`` are in the ``raw_batches`` ledger already."""
    if not batch_ids:
        return set()
    with engine.connect() as conn:
        return set(conn.scalars(select(raw_batches.c.batch_id).where(raw_batches.c.batch_id.in_(batch_ids))))
