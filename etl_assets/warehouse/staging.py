"""Writing parsed records into ``staging_events`` (and the unparseable ones into ``quarantine``).

Records arrive as a stream; every ``chunk_size`` of them commit in a transaction of their own, so a
crash loses at most the chunk in flight, and memory holds the chunk in flight and the one read ahead of it
(``_ReadAhead``: the file is parsed while the chunk before is staged). A batch seen for the first time
is COPYed straight into staging (the fast path); a batch that already has rows (a re-run after a
crash, a replay) goes through a temporary table and ``ON CONFLICT (batch_id, record_no)``, so a
record is staged once however often its batch is read.

A transaction that a transient error ends (a serialization failure, a deadlock, a lost connection) is
run again from the start on a new connection (``etl_assets.warehouse.retries``): a chunk is a list, so
it can be staged again, and a retried chunk goes through ``ON CONFLICT`` in case its first commit did
reach the server before the connection was lost.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from itertools import chain, islice
from operator import itemgetter
from time import perf_counter
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, Engine, exists, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from etl_assets.settings import pii_policy
from etl_assets.transform import TRANSFORM_VERSION
from etl_assets.transform.days import day_start
from etl_assets.transform.normalize import AcceptedTimes, RecordRejected, event_id_of, event_key
from etl_assets.transform.pii import PiiKeyMissing, PiiPolicy
from etl_assets.transform.records import ParsedRecord, RejectedRecord
from etl_assets.transform.staged import Transformed, digest_prefix, payload_digest, transform_record
from etl_assets.warehouse.copy import copy_rows, create_temp_table
from etl_assets.warehouse.retries import in_transaction
from etl_assets.warehouse.schema import (
    PENDING,
    STAGE_NORMALIZE,
    STAGE_PARSE,
    batch_days,
    quarantine,
    raw_batches,
    staging_events,
)
from etl_assets.warehouse.staged_rows import TRANSFORMED_COLUMNS, UNTRANSFORMED, transformed_values

STAGING_COLUMNS = (
    "batch_id",
    "record_no",
    "event_id",
    "event_day",
    "source",
    "payload",
    "transform_version",
    *TRANSFORMED_COLUMNS,
    "payload_digest",
)
_EVENT_ID, _EVENT_DAY, _PAYLOAD, _DIGEST = (
    STAGING_COLUMNS.index(name) for name in ("event_id", "event_day", "payload", "payload_digest")
)
QUARANTINE_COLUMNS = ("source", "batch_id", "record_no", "stage", "reason", "raw_record", "payload", "event_id")
DEFAULT_CHUNK_SIZE = 20_000


@dataclass
class StagingCounts:
    """What staging a batch did: the figures a materialization shows and reconciliation adds up."""

    records: int = 0
    staged: int = 0
    quarantined: int = 0
    already_staged: int = 0
    rejected: int = 0
    """Records staged with the transform's rejection (and quarantined with it)."""
    untransformed: int = 0
    """Records staged without the transform (they hold PII and no key is set): their day's merge transforms them."""
    resent: int = 0
    """Records already in ``events`` unchanged (the ledger holds their digest): claimed there, not staged again."""
    days: Counter[date] = field(default_factory=Counter)
    copied_whole: bool = True
    """Every record went through the first attempt's COPY: ``days`` counts the batch's staging rows exactly."""
    parse_seconds: float = 0.0
    """Time spent reading records from their source (decompressing and parsing) and taking their ids and digests;
    in a large batch a thread of its own spends it, beside the staging (``_ReadAhead``)."""
    transform_seconds: float = 0.0
    """Time spent in the transform (PII pseudonyms, normalize, order lines, identity facts)."""
    resent_seconds: float = 0.0
    """Time spent recognizing re-sent records (the ledger's look-up and claim)."""

    @property
    def days_touched(self) -> list[date]:
        return sorted(self.days)

    def add(self, other: StagingCounts) -> None:
        self.records += other.records
        self.staged += other.staged
        self.quarantined += other.quarantined
        self.already_staged += other.already_staged
        self.rejected += other.rejected
        self.untransformed += other.untransformed
        self.resent += other.resent
        self.days.update(other.days)
        self.copied_whole = self.copied_whole and other.copied_whole
        self.parse_seconds += other.parse_seconds
        self.transform_seconds += other.transform_seconds
        self.resent_seconds += other.resent_seconds


@dataclass(frozen=True, slots=True)
class _Chunk:
    """Up to ``chunk_size`` records of a batch, with what the reader made of each beside parsing it: its event id
    (``event_id_of``) and its digest (``payload_digest``), ``None`` for a record that could not be parsed."""

    records: list[ParsedRecord | RejectedRecord]
    event_ids: list[str | None]
    digests: list[bytes | None]


READER_SWITCH_INTERVAL = 0.0005
"""Seconds a thread holds the GIL before it must hand it to one waiting, while a reader runs (Python's default is
0.005). The staging thread gives the GIL up at each round trip to the server and then waits for the reader's turn to
end: at 5 ms a turn, a statement of 1 ms took 50 ms and a re-sent file's staging a quarter more time."""
_switch_interval_lock = threading.Lock()
_readers_running = 0
_switch_interval_before = 0.0


def _reader_started() -> None:
    global _readers_running, _switch_interval_before
    with _switch_interval_lock:
        if _readers_running == 0:
            _switch_interval_before = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch_interval_before, READER_SWITCH_INTERVAL))
        _readers_running += 1


def _reader_stopped() -> None:
    global _readers_running
    with _switch_interval_lock:
        _readers_running -= 1
        if _readers_running == 0:
            sys.setswitchinterval(_switch_interval_before)


class _ReadAhead:
    """``records`` in chunks of up to ``size``, each read, keyed and digested by a thread of its own, started at
    once, while the chunk before it is staged: the Python work of a record overlaps the database's work on the chunk
    before (psycopg lets go of the GIL while it waits for the server), which is most of a re-sent file's time, and
    the first chunk is read while the caller still waits for something else (a file's archive copy). The reader
    keeps one chunk ahead at most, so memory holds two; the time it spends adds to ``counts.parse_seconds`` when it
    is closed. An error of the reader is raised where its chunk would have come.
    """

    def __init__(
        self, records: Iterable[ParsedRecord | RejectedRecord], size: int, prefix: bytes, counts: StagingCounts
    ) -> None:
        self._records = records
        self._size = size
        self._prefix = prefix
        self._counts = counts
        self._ahead = threading.Semaphore(1)
        self._ready: queue.SimpleQueue[_Chunk | BaseException | None] = queue.SimpleQueue()
        self._stopped = threading.Event()
        self._ended = self._closed = False
        self._read_seconds = 0.0
        self._reader = threading.Thread(target=self._read, name="staging-reader", daemon=True)
        _reader_started()
        try:
            self._reader.start()
        except BaseException:
            _reader_stopped()
            raise

    def _read(self) -> None:
        iterator = iter(self._records)
        try:
            while self._ahead.acquire() and not self._stopped.is_set():
                started = perf_counter()
                chunk = list(islice(iterator, self._size))
                keyed = _Chunk(
                    chunk,
                    [event_id_of(record.payload) if isinstance(record, ParsedRecord) else None for record in chunk],
                    [
                        payload_digest(self._prefix, record.json_text) if isinstance(record, ParsedRecord) else None
                        for record in chunk
                    ],
                )
                self._read_seconds += perf_counter() - started
                self._ready.put(keyed if chunk else None)
                if not chunk:
                    return
        except BaseException as error:  # handed to the staging thread, which raises it
            self._ready.put(error)

    def __iter__(self) -> _ReadAhead:
        return self

    def __next__(self) -> _Chunk:
        if self._ended or self._closed:
            raise StopIteration
        item = self._ready.get()
        if item is None or isinstance(item, BaseException):
            self._ended = True
            if item is None:
                raise StopIteration
            raise item
        self._ahead.release()
        return item

    def close(self) -> None:
        """Stop the reader (at most the chunk it is reading is read) and count its time."""
        if self._closed:
            return
        self._closed = True
        self._stopped.set()
        self._ahead.release()
        try:
            self._reader.join()
        finally:
            _reader_stopped()
        self._counts.parse_seconds += self._read_seconds

    def __enter__(self) -> _ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class IngestTransform:
    """What ingest needs to transform a record: the accepted time window and the PII policy."""

    accepted: AcceptedTimes
    pii: PiiPolicy

    def digest_prefix(self, source: str) -> bytes:
        return digest_prefix(source, self.pii)

    def __call__(self, payload: Any) -> Transformed | None:
        """The record transformed; ``None`` when it holds PII and no key is set (staged as it is)."""
        try:
            return transform_record(payload, self.accepted, self.pii)
        except PiiKeyMissing:
            return None


def _split(
    records: Iterable[tuple[ParsedRecord | RejectedRecord, bytes | None]],
    batch_id: str,
    source: str,
    transform: IngestTransform,
    counts: StagingCounts,
    rejected: list[tuple[Any, ...]],
) -> Iterator[tuple[Any, ...]]:
    """The staging rows of ``records`` (each with its digest), transformed, as they are read; what cannot be keyed
    goes to ``rejected``."""
    for record, record_digest in records:
        counts.records += 1
        if isinstance(record, RejectedRecord):
            rejected.append((source, batch_id, record.record_no, STAGE_PARSE, record.reason, record.raw, None, None))
            continue
        started = perf_counter()
        result = transform(record.payload)
        counts.transform_seconds += perf_counter() - started
        if result is not None and result.event is not None:
            event_id, occurred_at = result.event.event_id, result.event.occurred_at
        else:
            try:
                key = event_key(record.payload, transform.accepted)
                event_id, occurred_at = key.event_id, key.occurred_at
            except RecordRejected as error:
                rejected.append(
                    (
                        source,
                        batch_id,
                        record.record_no,
                        STAGE_PARSE,
                        str(error),
                        record.json_text.encode(),
                        record.json_text,
                        None,
                    )
                )
                continue
        day = occurred_at.date()
        counts.days[day] += 1
        digest = None
        if result is None:
            counts.untransformed += 1
            version, values = None, UNTRANSFORMED
        else:
            counts.rejected += result.event is None
            version, values = TRANSFORM_VERSION, transformed_values(result)
            if result.event is not None:
                digest = record_digest
        yield (batch_id, record.record_no, event_id, day, source, record.json_text, version, *values, digest)


def stage_records(
    engine: Engine,
    batch_id: str,
    source: str,
    records: Iterable[ParsedRecord | RejectedRecord],
    accepted: AcceptedTimes,
    *,
    pii: PiiPolicy | None = None,
    replay: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    before_writing: Callable[[], None] | None = None,
) -> StagingCounts:
    """Stage ``records`` of one batch, transformed (``pii``: the PII policy; the environment's when not given); a
    record without a usable id or timestamp is quarantined at once, one the transform rejects is
    staged with the reason and quarantined. ``before_writing`` runs once reading has begun and before anything is
    written (a file's archive copy is awaited there and its batch entered in the ledger, while its first records
    are read).

    The batch's rows wait for their days' merges once the batch is closed (``batch_days``), so a merge never
    reads half a file. ``replay`` re-stages a batch that was staged before (after a change to parsing or
    normalizing): its rows take the new payload, key and transform and the time of the replay as
    ``ingested_at``, and wait for their days' merges again; rejections that now pass are marked resolved.
    """
    transform = IngestTransform(accepted, pii if pii is not None else pii_policy())
    counts = StagingCounts()
    with _ReadAhead(records, chunk_size, transform.digest_prefix(source), counts) as chunks:
        if before_writing is not None:
            before_writing()
        fresh = in_transaction(
            engine,
            lambda conn: not conn.scalar(select(exists().where(staging_events.c.batch_id == batch_id))),
            what=f"looking up batch {batch_id}",
        )
        for chunk in chunks:
            counts.add(_stage_chunk_retrying(engine, chunk, batch_id, source, transform, fresh=fresh, replay=replay))
    counts.copied_whole = counts.copied_whole and fresh
    in_transaction(
        engine,
        lambda conn: _close_batches(conn, [(batch_id, source, counts)], replay),
        what=f"closing batch {batch_id}",
    )
    return counts


def _stage_chunk_retrying(
    engine: Engine,
    chunk: _Chunk,
    batch_id: str,
    source: str,
    transform: IngestTransform,
    *,
    fresh: bool,
    replay: bool,
) -> StagingCounts:
    """Stage one chunk in a transaction of its own, run again from the start after a transient error."""
    attempts = 0

    def attempt(conn: Connection) -> StagingCounts:
        nonlocal attempts
        attempts += 1
        counts = StagingCounts(copied_whole=attempts == 1)
        # A retry may follow a commit that reached the server though its acknowledgement was lost with the
        # connection: it goes through ON CONFLICT, never a second COPY of the same records.
        _stage_chunk(conn, chunk, batch_id, source, transform, counts, fresh=fresh and attempts == 1, replay=replay)
        return counts

    return in_transaction(engine, attempt, what=f"staging a chunk of batch {batch_id}")


def _stage_chunk(
    conn: Connection,
    chunk: _Chunk,
    batch_id: str,
    source: str,
    transform: IngestTransform,
    counts: StagingCounts,
    *,
    fresh: bool,
    replay: bool,
) -> None:
    """Stage one chunk inside the caller's transaction: COPY when the batch is new (streamed, record by record),
    else insert what is missing."""
    rejected: list[tuple[Any, ...]] = []
    records: Iterable[tuple[ParsedRecord | RejectedRecord, bytes | None]] = zip(
        chunk.records, chunk.digests, strict=True
    )
    if fresh:
        records = _claim_resent(conn, chunk, transform, counts)
    rows = _split(records, batch_id, source, transform, counts, rejected)
    if fresh:
        counts.staged += copy_rows(conn, staging_events.name, STAGING_COLUMNS, rows)
    else:
        _restage_rows(conn, batch_id, list(rows), counts, replay)
    if rejected:
        counts.quarantined += sum(_quarantine_rows(conn, rejected, replay).values())


def _restage_rows(
    conn: Connection, batch_id: str, rows: list[tuple[Any, ...]], counts: StagingCounts, replay: bool
) -> None:
    """Stage the rows of a batch that has rows already: only what is missing (a replay rewrites them all)."""
    written = _merge_staging_rows(conn, rows, replay)
    counts.staged += written
    counts.already_staged += len(rows) - written
    counts.copied_whole = False
    if replay:
        _resolve_parse_quarantine(conn, batch_id, [row[1] for row in rows])


RESENT_SAMPLE = 256
"""How many of a chunk's first records are looked up in the ledger: when none of their ids is there (a new file),
the chunk is staged without looking up the rest."""
LEDGER_KNOWS_ANY = text("SELECT EXISTS (SELECT 1 FROM event_ledger WHERE event_id = ANY(:event_ids))")
NEXT_STAGING_POSITION = text("SELECT nextval('staging_events_id_seq')")
CLAIM_RESENT = text(
    "UPDATE event_ledger l SET resent_through = :position "
    "FROM jsonb_to_recordset(CAST(:sent AS jsonb)) AS r(event_id text, digest text) "
    "WHERE l.event_id = r.event_id AND l.payload_digest = decode(r.digest, 'hex') "
    "AND l.occurred_at >= :earliest AND l.occurred_at < :latest "
    "RETURNING l.event_id"
)
"""Claims the ledger entries whose version in ``events`` has the digest a re-sent record brings (inside the accepted
window, as the transform would check it): ``:position``, a staging id drawn now, is where the record arrived, so a
version staged before it loses to it at its merge and a version staged after it wins. A merge that changes an
entry first leaves the record to be staged; one that waits for this claim finds its version older than the re-send.

The records travel as one JSON text, in ``event_id`` order: each is looked up by the ledger's key in that order
(locking entries in the order merges lock them), and psycopg does not adapt 20,000 values one by one in Python."""


def _ledger_knows_any(conn: Connection, event_ids: Iterable[str | None]) -> bool:
    """Whether the ledger holds any of ``event_ids`` (the sample that decides whether a chunk is looked up whole)."""
    sample = [event_id for event_id in event_ids if event_id is not None]
    return bool(sample) and bool(conn.scalar(LEDGER_KNOWS_ANY, {"event_ids": sample}))


def _claim(conn: Connection, sent: list[tuple[str, bytes]], accepted: AcceptedTimes) -> set[str]:
    """Claim in the ledger each ``(event_id, payload_digest)`` whose version is in ``events``; the ids claimed."""
    if not sent:
        return set()
    records = sorted(
        ({"event_id": event_id, "digest": digest.hex()} for event_id, digest in sent), key=itemgetter("event_id")
    )
    return set(
        conn.scalars(
            CLAIM_RESENT,
            {
                "sent": orjson.dumps(records).decode(),
                "earliest": accepted.earliest,
                "latest": accepted.latest,
                "position": conn.scalar(NEXT_STAGING_POSITION),
            },
        )
    )


def _claim_resent_rows(
    conn: Connection, batches: Sequence[PreparedBatch], counts: Sequence[StagingCounts]
) -> list[list[tuple[Any, ...]]]:
    """The rows of prepared batches (new to staging, staged together in this order) left to stage once those already
    in ``events`` unchanged are claimed in the ledger; each batch's counts take its claimed rows out of its days and
    into ``resent``. An id sent more than once among them is staged every time, so the last version wins as it would
    have. When none of their first ``RESENT_SAMPLE`` ids is in the ledger, nothing more is looked up."""
    every = [row for batch in batches for row in batch.rows]
    if not _ledger_knows_any(conn, (row[_EVENT_ID] for row in islice(every, RESENT_SAMPLE))):
        return [batch.rows for batch in batches]
    times_sent = Counter(row[_EVENT_ID] for row in every)
    window = AcceptedTimes(
        min(batch.accepted.earliest for batch in batches), max(batch.accepted.latest for batch in batches)
    )  # each row passed its own batch's window when it was transformed: this one only has to hold them all
    claimed = _claim(
        conn,
        [
            (row[_EVENT_ID], row[_DIGEST])
            for row in every
            if row[_DIGEST] is not None and times_sent[row[_EVENT_ID]] == 1
        ],
        window,
    )
    left: list[list[tuple[Any, ...]]] = []
    for batch, batch_counts in zip(batches, counts, strict=True):
        rows = []
        for row in batch.rows:
            if row[_EVENT_ID] in claimed:  # claimed ids were sent once, with a digest
                batch_counts.resent += 1
                batch_counts.days[row[_EVENT_DAY]] -= 1
            else:
                rows.append(row)
        batch_counts.days = +batch_counts.days
        left.append(rows)
    return left


def _claim_resent(
    conn: Connection, chunk: _Chunk, transform: IngestTransform, counts: StagingCounts
) -> Iterable[tuple[ParsedRecord | RejectedRecord, bytes | None]]:
    """The records of ``chunk`` (each with its digest) left to stage once those already in ``events`` unchanged are
    claimed in the ledger.

    An id sent more than once in the chunk is staged every time, so the chunk's last version wins as it would have.
    A chunk whose first ``RESENT_SAMPLE`` ids the ledger does not know is returned whole, without looking up more."""
    started = perf_counter()
    try:
        if not _ledger_knows_any(conn, islice(chunk.event_ids, RESENT_SAMPLE)):
            return zip(chunk.records, chunk.digests, strict=True)
        times_sent = Counter(chunk.event_ids)
        claimed = _claim(
            conn,
            [
                (event_id, digest)
                for event_id, digest in zip(chunk.event_ids, chunk.digests, strict=True)
                if event_id is not None and digest is not None and times_sent[event_id] == 1
            ],
            transform.accepted,
        )
        counts.records += len(claimed)
        counts.resent += len(claimed)
        return [
            (record, digest)
            for record, event_id, digest in zip(chunk.records, chunk.event_ids, chunk.digests, strict=True)
            if event_id not in claimed
        ]
    finally:
        counts.resent_seconds += perf_counter() - started


QUARANTINE_REJECTED = text(
    "INSERT INTO quarantine (source, batch_id, record_no, stage, reason, payload, staging_id, event_id, event_day) "
    f"SELECT source, batch_id, record_no, '{STAGE_NORMALIZE}', rejection, payload, id, event_id, event_day "
    "FROM staging_events WHERE batch_id = :batch_id AND rejection IS NOT NULL "
    "ON CONFLICT (batch_id, record_no, stage) DO UPDATE SET reason = excluded.reason, resolved_at = NULL "
    "WHERE quarantine.reason IS DISTINCT FROM excluded.reason OR quarantine.resolved_at IS NOT NULL"
)
RESOLVE_PASSED = text(
    "UPDATE quarantine q SET resolved_at = now() FROM staging_events s "
    f"WHERE q.batch_id = :batch_id AND q.stage = '{STAGE_NORMALIZE}' AND q.resolved_at IS NULL "
    "AND s.batch_id = q.batch_id AND s.record_no = q.record_no AND s.rejection IS NULL"
)
COUNT_BATCH_DAYS = text(
    "SELECT event_day, count(*), bool_and(transform_version IS NOT DISTINCT FROM :version) "
    "FROM staging_events WHERE batch_id = :batch_id AND event_day IS NOT NULL GROUP BY event_day"
)
UPSERT_BATCH_DAY = text(
    "INSERT INTO batch_days (batch_id, day, source, staged_rows, transform_version) "
    "VALUES (:batch_id, :day, :source, :rows, :version) "
    "ON CONFLICT (batch_id, day) DO UPDATE SET staged_rows = excluded.staged_rows, "
    "transform_version = excluded.transform_version, staged_at = now() "
    "WHERE (batch_days.staged_rows, batch_days.transform_version) "
    "IS DISTINCT FROM (excluded.staged_rows, excluded.transform_version)"
)
REPLAYED_BATCH_DAYS = text(
    "UPDATE batch_days SET staged_rows = 0, merged_rows = 0, merged_through = 0, staged_at = now() "
    "WHERE batch_id = :batch_id"
)
"""A replay rewrites the batch's rows in place: every day of it is read again by its next merge (the upserts of
``UPSERT_BATCH_DAY`` that follow set the rows each day has now)."""


CLOSE_BATCH = text(
    "UPDATE raw_batches SET record_count = :records, resent_count = :resent, staged_at = now(), quarantined_count = ("
    f"SELECT count(*) FROM quarantine q WHERE q.batch_id = raw_batches.batch_id AND q.stage = '{STAGE_PARSE}' "
    "AND q.resolved_at IS NULL) WHERE batch_id = :batch_id"
)
"""The ledger's account of a staged batch: how many records it had, how many could not be parsed, how many were in
``events`` already (re-sent), and when."""


def _close_batches(conn: Connection, closing: Sequence[tuple[str, str, StagingCounts]], replay: bool) -> None:
    """For each ``(batch_id, source, counts)``: record in the ledger how many records the batch had and how many
    could not be parsed, quarantine what the transform rejected, and hand the batch's days to their merges
    (``batch_days``). One statement of each kind for all the batches."""
    conn.execute(
        CLOSE_BATCH,
        [{"batch_id": batch_id, "records": counts.records, "resent": counts.resent} for batch_id, _, counts in closing],
    )
    rejecting = [
        {"batch_id": batch_id} for batch_id, _, counts in closing if counts.rejected or not counts.copied_whole
    ]
    if rejecting:
        conn.execute(QUARANTINE_REJECTED, rejecting)
    if replay:
        replayed = [{"batch_id": batch_id} for batch_id, _, _ in closing]
        conn.execute(RESOLVE_PASSED, replayed)
        conn.execute(REPLAYED_BATCH_DAYS, replayed)
    days: list[dict[str, Any]] = []
    for batch_id, source, counts in closing:
        if counts.copied_whole:
            version = None if counts.untransformed else TRANSFORM_VERSION
            found = [(day, rows, version) for day, rows in counts.days.items()]
        else:
            counted = conn.execute(COUNT_BATCH_DAYS, {"batch_id": batch_id, "version": TRANSFORM_VERSION})
            found = [(day, rows, TRANSFORM_VERSION if current else None) for day, rows, current in counted]
        days.extend(
            {"batch_id": batch_id, "day": day, "source": source, "rows": rows, "version": version}
            for day, rows, version in found
        )
    if days:
        conn.execute(UPSERT_BATCH_DAY, days)


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
    pii: PiiPolicy | None = None,
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
    [counts] = stage_prepared(
        engine,
        [prepare_batch(entry, records, accepted, pii=pii)],
        before_commit=before_commit,
        retry_seconds=retry_seconds,
    )
    return counts


@dataclass(frozen=True)
class PreparedBatch:
    """A small batch read and transformed, ready to stage: its ledger entry, its staging rows in record order, its
    records that could not be keyed (as quarantine rows), and what reading and transforming them counted."""

    entry: BatchEntry
    rows: list[tuple[Any, ...]]
    rejected: list[tuple[Any, ...]]
    counts: StagingCounts
    accepted: AcceptedTimes

    @property
    def record_bytes(self) -> int:
        """The size of its records as read (decompressed): about what holding it in memory costs."""
        raw = QUARANTINE_COLUMNS.index("raw_record")
        return sum(len(row[_PAYLOAD]) for row in self.rows) + sum(len(row[raw]) for row in self.rejected)


def prepare_batch(
    entry: BatchEntry,
    records: Iterable[ParsedRecord | RejectedRecord],
    accepted: AcceptedTimes,
    *,
    pii: PiiPolicy | None = None,
) -> PreparedBatch:
    """Read and transform a small batch's records in memory, outside any transaction (``stage_prepared`` writes
    them): the caller bounds the batch's size."""
    transform = IngestTransform(accepted, pii if pii is not None else pii_policy())
    counts = StagingCounts()
    started = perf_counter()
    read = list(records)
    counts.parse_seconds += perf_counter() - started
    prefix = transform.digest_prefix(entry.source)
    digests = (
        payload_digest(prefix, record.json_text) if isinstance(record, ParsedRecord) else None for record in read
    )
    rejected: list[tuple[Any, ...]] = []
    rows = list(_split(zip(read, digests, strict=True), entry.batch_id, entry.source, transform, counts, rejected))
    return PreparedBatch(entry, rows, rejected, counts, accepted)


def stage_prepared(
    engine: Engine,
    batches: Sequence[PreparedBatch],
    *,
    before_commit: Callable[[Connection], None] | None = None,
    retry_seconds: float | None = None,
) -> list[StagingCounts]:
    """Stage prepared batches in one transaction, each still a batch of its own (its ledger row, its rows, its
    quarantine, its counts, returned in order): one ledger insert, one COPY for the batches new to staging, one
    close, one commit for them all. Their rows enter staging in the order of ``batches``, so of an event sent in two
    of them, the later batch's version wins. All or nothing, as ``stage_batch``; a transient error runs the whole
    transaction again."""
    names = ", ".join(batch.entry.batch_id for batch in batches[:3]) + (", …" if len(batches) > 3 else "")

    def attempt(conn: Connection) -> list[StagingCounts]:
        fresh = _enter_batches(conn, [batch.entry for batch in batches])
        counts = [replace(batch.counts, days=Counter(batch.counts.days)) for batch in batches]
        new = [
            (batch, batch_counts)
            for batch, batch_counts in zip(batches, counts, strict=True)
            if batch.entry.batch_id in fresh
        ]
        rows_left = dict(
            zip(
                (batch.entry.batch_id for batch, _ in new),
                _claim_resent_rows(conn, [batch for batch, _ in new], [batch_counts for _, batch_counts in new]),
                strict=True,
            )
        )
        copying: list[list[tuple[Any, ...]]] = []
        for batch, batch_counts in zip(batches, counts, strict=True):
            if batch.entry.batch_id in fresh:
                rows = rows_left[batch.entry.batch_id]
                copying.append(rows)
                batch_counts.staged += len(rows)
            else:
                _copy_prepared(conn, copying)
                copying = []
                _restage_rows(conn, batch.entry.batch_id, batch.rows, batch_counts, replay=False)
        _copy_prepared(conn, copying)
        quarantined = _quarantine_rows(conn, [row for batch in batches for row in batch.rejected], replay=False)
        closing = []
        for batch, batch_counts in zip(batches, counts, strict=True):
            batch_counts.quarantined += quarantined[batch.entry.batch_id]
            closing.append((batch.entry.batch_id, batch.entry.source, batch_counts))
        _close_batches(conn, closing, replay=False)
        if before_commit is not None:
            before_commit(conn)
        return counts

    return in_transaction(engine, attempt, what=f"staging batch {names}", max_seconds=retry_seconds)


def _copy_prepared(conn: Connection, batches_rows: list[list[tuple[Any, ...]]]) -> None:
    """One COPY of the rows of batches new to staging, in their order."""
    if batches_rows:
        copy_rows(conn, staging_events.name, STAGING_COLUMNS, chain.from_iterable(batches_rows))


def _merge_staging_rows(conn: Connection, rows: list[tuple[Any, ...]], replay: bool) -> int:
    incoming = create_temp_table(conn, "incoming_staging", staging_events, STAGING_COLUMNS)
    copy_rows(conn, incoming.name, STAGING_COLUMNS, rows)
    statement = pg_insert(staging_events).from_select(list(STAGING_COLUMNS), select(incoming))
    if replay:
        excluded = statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=["batch_id", "record_no"],
            set_={
                **{name: excluded[name] for name in STAGING_COLUMNS if name not in ("batch_id", "record_no", "source")},
                "ingested_at": func.now(),
            },
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=["batch_id", "record_no"])
    return conn.execute(statement).rowcount


def _quarantine_rows(conn: Connection, rows: list[tuple[Any, ...]], replay: bool) -> Counter[str]:
    """Quarantine ``rows``; how many were written, by batch id (a row there already is not written again, unless
    a replay rewrites its reason)."""
    if not rows:
        return Counter()
    statement = pg_insert(quarantine).values([dict(zip(QUARANTINE_COLUMNS, row, strict=True)) for row in rows])
    if replay:
        statement = statement.on_conflict_do_update(
            index_elements=["batch_id", "record_no", "stage"],
            set_={"reason": statement.excluded.reason, "resolved_at": None},
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=["batch_id", "record_no", "stage"])
    return Counter(conn.scalars(statement.returning(quarantine.c.batch_id)))


def _resolve_parse_quarantine(conn: Connection, batch_id: str, record_nos: list[int]) -> None:
    conn.execute(
        update(quarantine)
        .where(
            quarantine.c.batch_id == batch_id,
            quarantine.c.stage == STAGE_PARSE,
            quarantine.c.record_no.in_(record_nos),
            quarantine.c.resolved_at.is_(None),
        )
        .values(resolved_at=func.now())
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
    return enter_batch(engine, BatchEntry(batch_id, source, source_uri, archive_key, sha256, byte_count))


def enter_batch(engine: Engine, entry: BatchEntry) -> bool:
    """``record_batch`` for an entry already made."""
    with engine.begin() as conn:
        return entry.batch_id in _enter_batches(conn, [entry])


RESOLVE_UNREAD = text(
    "UPDATE quarantine q SET resolved_at = now() FROM raw_batches b "
    "WHERE b.batch_id = :batch_id AND b.archive_key IS NULL AND b.staged_at IS NULL "
    f"AND q.batch_id = b.batch_id AND q.record_no = 0 AND q.stage = '{STAGE_PARSE}' AND q.resolved_at IS NULL"
)
ENTER_READ = text(
    "UPDATE raw_batches SET archive_key = :archive_key, sha256 = :sha256, byte_count = :byte_count "
    "WHERE batch_id = :batch_id AND archive_key IS NULL AND staged_at IS NULL RETURNING batch_id"
)
"""A batch entered as unreadable (no archive copy, no checksum) whose run died before it was staged, read after all
by a later attempt: its ledger row takes the archive copy and checksum, and its open "could not read the file" row is
resolved, so the ledger says where its bytes are and its records are counted once."""


def _enter_batches(conn: Connection, entries: Sequence[BatchEntry]) -> set[str]:
    """Enter batches into the ``raw_batches`` ledger; the ids of those that were not there, or were there unread and
    unstaged and now are archived (``ENTER_READ``)."""
    values = [
        {
            "batch_id": entry.batch_id,
            "source": entry.source,
            "source_uri": entry.source_uri,
            "archive_key": entry.archive_key,
            "sha256": entry.sha256,
            "byte_count": entry.byte_count,
        }
        for entry in entries
    ]
    statement = pg_insert(raw_batches).values(values).on_conflict_do_nothing(index_elements=["batch_id"])
    entered = set(conn.scalars(statement.returning(raw_batches.c.batch_id)))
    for entry in entries:
        if entry.batch_id not in entered and entry.archive_key is not None:
            conn.execute(RESOLVE_UNREAD, {"batch_id": entry.batch_id})
            read = {key: getattr(entry, key) for key in ("batch_id", "archive_key", "sha256", "byte_count")}
            if conn.scalar(ENTER_READ, read) is not None:
                entered.add(entry.batch_id)
    return entered


def find_batch(engine: Engine, batch_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(raw_batches).where(raw_batches.c.batch_id == batch_id)).mappings().first()
    return dict(row) if row else None


def find_batches(engine: Engine, batch_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The ledger rows of those of ``batch_ids`` that are in it, by batch id (one query)."""
    if not batch_ids:
        return {}
    with engine.connect() as conn:
        found = conn.execute(select(raw_batches).where(raw_batches.c.batch_id.in_(batch_ids))).mappings()
        return {row["batch_id"]: dict(row) for row in found}


def waiting_to_merge() -> ColumnElement[bool]:
    """Staging rows the next merge of their day reads: of a batch closed for the day, past what merges read."""
    return exists().where(
        batch_days.c.batch_id == staging_events.c.batch_id,
        batch_days.c.day == staging_events.c.event_day,
        staging_events.c.id > batch_days.c.merged_through,
    )


@dataclass(frozen=True)
class PendingDay:
    day: date
    rows: int
    staged_rows: int
    last_staged_at: datetime

    @property
    def version(self) -> str:
        """Changes whenever rows of the day become pending: more rows staged, or rows staged again (a later time)."""
        return f"{self.staged_rows}.{self.last_staged_at.timestamp():.6f}"


PENDING_DAYS = text(
    "SELECT day, sum(staged_rows - merged_rows), sum(staged_rows), max(staged_at) FROM batch_days "
    "WHERE merged_rows < staged_rows GROUP BY day ORDER BY day"
)


def pending_days(engine: Engine) -> list[PendingDay]:
    """Days that have staged rows waiting for their merge into ``events`` (``batch_days``: no staging row is read)."""
    with engine.connect() as conn:
        return [PendingDay(day, int(rows), int(staged), at) for day, rows, staged, at in conn.execute(PENDING_DAYS)]


@dataclass(frozen=True)
class WaitingDay:
    day: date
    rows: int


WAITING_DAYS = text(
    f"SELECT event_day, count(*) FROM staging_status WHERE status = '{PENDING}' AND event_day IS NOT NULL "
    "GROUP BY event_day ORDER BY event_day"
)


STAGING_ROWS_BY_STATUS = text("SELECT status, count(*) FROM staging_status GROUP BY status")
LAST_MERGE = text("SELECT max(merged_at) FROM batch_days")


def staging_rows_by_status(conn: Connection) -> dict[str, int]:
    """Staging rows by the status ``staging_status`` gives them."""
    return {status: count for status, count in conn.execute(STAGING_ROWS_BY_STATUS)}


def last_merged_at(conn: Connection) -> datetime | None:
    """When a merge last read staged rows (``None``: never)."""
    merged_at: datetime | None = conn.scalar(LAST_MERGE)
    return merged_at


def waiting_days(engine: Engine) -> list[WaitingDay]:
    """The rows waiting to merge into ``events``, by day, as ``staging_status`` counts them: unlike ``pending_days``
    (the merges' marks in ``batch_days``), not the rows the transform rejected (they are in quarantine), and with
    those of a batch still being staged."""
    with engine.connect() as conn:
        return [WaitingDay(day, rows) for day, rows in conn.execute(WAITING_DAYS)]


def known_batch_ids(engine: Engine, batch_ids: list[str]) -> set[str]:
    """Which of ``batch_ids`` are in the ``raw_batches`` ledger already."""
    if not batch_ids:
        return set()
    with engine.connect() as conn:
        return set(conn.scalars(select(raw_batches.c.batch_id).where(raw_batches.c.batch_id.in_(batch_ids))))


ARCHIVED_BATCHES = text(
    f"SELECT {', '.join(column.name for column in raw_batches.columns)} FROM raw_batches "
    "WHERE archive_key IS NOT NULL AND received_at >= :start AND received_at < :end ORDER BY received_at, batch_id"
)


def archived_batches(engine: Engine, first_day: date, last_day: date) -> list[dict[str, Any]]:
    """Every archived batch received between ``first_day`` and ``last_day`` (UTC, inclusive), oldest first: what a
    replay of those days reads back."""
    with engine.connect() as conn:
        rows = conn.execute(
            ARCHIVED_BATCHES, {"start": day_start(first_day), "end": day_start(last_day + timedelta(days=1))}
        ).mappings()
        return [dict(row) for row in rows]
