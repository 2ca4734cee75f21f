"""Landing files end to end into staging: archive their bytes, enter them in the ledger, parse, stage.

Order matters for "nothing lost": the bytes are in the raw archive and the batch in ``raw_batches``
(with its SHA-256) before a single record is staged: a small file's ledger row, records and close commit in one
transaction (with those of the small files staged beside it), a larger file's staging commits chunk by chunk, and a
re-run of the same batch stages only what is missing. Replays (``sources/replay.py``) read the archive, never the
landing bucket.

The files of a run (``ingest_landing_objects``) are fetched a few at a time (downloaded, archived, a small one read
and transformed) and staged one after another in the run's order, so of an event sent in two files of a run, the
later file's version wins, as when each file had a run of its own. Small files fetched by the time the previous ones
are staged go in together: one transaction, one COPY, each still a batch of its own; should that transaction fail,
each stages alone, so a file that cannot be staged fails only itself.

Every file is accounted for: its records are staged or quarantined, or, when the file cannot be read at all
(gone, changed or refused since it was listed; of no shape read here; compressed too deep; holding no record),
one quarantine row (``record_no`` 0) says why, naming the file and where its bytes are archived. A file the store
refuses for good is such a row too, entered in the ledger without an archive copy, and its run succeeds.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy import Engine

from etl_assets.settings import Settings
from etl_assets.sources.landing import (
    SOURCE,
    DownloadedObject,
    LandingObject,
    archive_key,
    archive_object,
    download,
)
from etl_assets.sources.s3 import describe_s3_error, is_transient_s3_error, s3_error_code
from etl_assets.transform.normalize import AcceptedTimes
from etl_assets.transform.records import ParsedRecord, RejectedRecord, read_file
from etl_assets.warehouse.retries import is_transient
from etl_assets.warehouse.staging import (
    BatchEntry,
    PreparedBatch,
    StagingCounts,
    enter_batch,
    find_batch,
    find_batches,
    prepare_batch,
    record_batch,
    stage_prepared,
    stage_records,
)

UNREAD_SHA256 = ""
"""The ledger's checksum of a file whose bytes could not be read (its ``archive_key`` is empty too)."""
SMALL_FILE_BYTES = 256 * 2**10
"""A landing file up to this size (as stored, compressed or not) is read into memory and staged in one transaction
with its ledger row; a larger one in chunks of its own transactions, so memory stays bounded by the chunk."""
FILES_AHEAD = 16
BYTES_AHEAD = 32 * 2**20
"""A run fetches at most ``FILES_AHEAD`` files and ``BYTES_AHEAD`` bytes ahead of the files it stages (as listed,
or as read for a small file fetched, which may be compressed): what waits is bounded in memory (small files, read)
and on local disk (larger ones)."""

_WHY_UNREADABLE = {
    "NoSuchKey": "it was deleted after it was listed",
    "PreconditionFailed": "it changed after it was listed; its new version is a batch of its own",
    "AccessDenied": "the platform's credentials may not read it",
    "InvalidObjectState": "it is in an archive storage class; restore it first",
}


@dataclass(frozen=True)
class IngestedFile:
    batch_id: str
    archive_key: str | None
    """None when the file could not be read (its quarantine row says why)."""
    sha256: str
    byte_count: int
    newly_archived: bool
    counts: StagingCounts
    seconds: float


@dataclass(frozen=True)
class Reading:
    """How a run reads its files: the accepted event times and ETL_JSON_ARRAY_KEYS."""

    accepted: AcceptedTimes
    array_keys: Sequence[str]

    @classmethod
    def of(cls, accepted: AcceptedTimes, array_keys: Sequence[str] | None = None) -> Reading:
        return cls(accepted, Settings.from_env().json_array_keys if array_keys is None else array_keys)


@dataclass
class FetchedFile:
    """A landing file downloaded and archived, waiting to be staged: a small one read and transformed in memory
    (``prepared``), a larger one on local disk (``local``) until ``close``."""

    obj: LandingObject
    entry: BatchEntry
    location: str
    newly_archived: bool
    started: float
    prepared: PreparedBatch | None
    local: DownloadedObject | None
    downloads: ExitStack
    archive_copy: Callable[[], None] | None = None
    """A larger file's archive copy, still to make: it is made while its first records are read (``stage_fetched``)."""

    def close(self) -> None:
        """Remove the local copy of a larger file (staged or not)."""
        self.downloads.close()


def ingest_landing_object(
    client: Any,
    engine: Engine,
    obj: LandingObject,
    *,
    landing_bucket: str,
    archive_bucket: str,
    accepted: AcceptedTimes,
    today: date | None = None,
    array_keys: Sequence[str] | None = None,
) -> IngestedFile:
    """One landing file end to end: ``fetch_landing_object``, then ``stage_fetched``."""
    reading = Reading.of(accepted, array_keys)
    known = find_batch(engine, obj.batch_id)
    fetched = fetch_landing_object(
        client,
        engine,
        obj,
        known,
        landing_bucket=landing_bucket,
        archive_bucket=archive_bucket,
        reading=reading,
        today=today,
    )
    if isinstance(fetched, IngestedFile):
        return fetched
    try:
        [ingested] = stage_fetched(engine, [fetched], reading)
    finally:
        fetched.close()
    return ingested


def fetch_landing_object(
    client: Any,
    engine: Engine,
    obj: LandingObject,
    known: Mapping[str, Any] | None,
    *,
    landing_bucket: str,
    archive_bucket: str,
    reading: Reading,
    today: date | None = None,
) -> IngestedFile | FetchedFile:
    """Everything of a landing file before it is staged: download it (hashing it), archive it, and read and
    transform a small one. ``known``: the file's row in the ledger, if any. A file staged already (a retry, a
    re-materialization) is not read again, and a file that cannot be read becomes its quarantine row: both come back
    as what they became."""
    started = time.perf_counter()
    if known and known["staged_at"] is not None:
        # Every chunk committed before the ledger's staged_at was set: a re-run (a retry, a re-materialization)
        # has nothing to add, so it reads neither the object nor the records. Replays re-stage on purpose.
        counts = StagingCounts(records=known["record_count"] or 0, resent=known["resent_count"])
        counts.already_staged = counts.records - (known["quarantined_count"] or 0) - counts.resent
        return IngestedFile(
            obj.batch_id,
            known["archive_key"],
            known["sha256"],
            known["byte_count"],
            False,
            counts,
            time.perf_counter() - started,
        )
    source_uri = f"s3://{landing_bucket}/{obj.key}"
    archived = known["archive_key"] if known else None
    # A batch archived by an earlier attempt is read from the archive: its bytes are there, checked, even if the
    # landing object has gone since.
    bucket, read_key, etag = (archive_bucket, archived, None) if archived else (landing_bucket, obj.key, obj.etag)
    archiving = False
    downloads = ExitStack()
    try:
        local = downloads.enter_context(download(client, bucket, read_key, etag))
        key = archived or archive_key(SOURCE, today or datetime.now(UTC).date(), obj)
        copy = (
            None
            if archived
            else partial(archive_object, client, landing_bucket, obj, archive_bucket, key, local.sha256)
        )
        location = f"{source_uri}, archived as s3://{archive_bucket}/{key}"
        entry = BatchEntry(obj.batch_id, SOURCE, source_uri, key, local.sha256, local.byte_count)
        newly_archived = not archived  # new to the ledger, or entered unread by an attempt that died
        if local.byte_count > SMALL_FILE_BYTES:
            return FetchedFile(obj, entry, location, newly_archived, started, None, local, downloads, copy)
        if copy is not None:
            archiving = True
            copy()
            archiving = False
        with local.path.open("rb") as stream:
            records = _located(read_file(stream, obj.key, array_keys=reading.array_keys), location)
            prepared = prepare_batch(entry, records, reading.accepted)
        downloads.close()
        return FetchedFile(obj, entry, location, newly_archived, started, prepared, None, downloads)
    except (ClientError, BotoCoreError) as error:
        downloads.close()
        if archived or not _file_unreadable(error, archiving):
            raise
        counts = _quarantine_unreadable(engine, obj, source_uri, error, reading.accepted)
        return IngestedFile(obj.batch_id, None, UNREAD_SHA256, obj.size, False, counts, time.perf_counter() - started)
    except BaseException:
        downloads.close()
        raise


def stage_fetched(engine: Engine, files: Sequence[FetchedFile], reading: Reading) -> list[IngestedFile]:
    """Stage fetched files, in their order. Small ones (read in memory) stage in one transaction with their ledger
    rows (``stage_prepared``: each its own batch, all of them or none committed). A larger one, given alone, is
    entered in the ledger, then staged from its local copy in chunks of their own transactions, so memory stays
    bounded by the chunk (the caller closes it)."""
    if len(files) == 1 and (local := files[0].local) is not None:
        return [_stage_larger(engine, files[0], local, reading)]
    prepared = [file.prepared for file in files]
    if None in prepared:
        raise ValueError("a larger file (staged in chunks) is staged alone")
    staged = stage_prepared(engine, [batch for batch in prepared if batch is not None])
    return [_ingested(file, counts) for file, counts in zip(files, staged, strict=True)]


def _stage_larger(engine: Engine, file: FetchedFile, local: DownloadedObject, reading: Reading) -> IngestedFile:
    """A larger file, staged from its local copy in chunks of their own transactions. Its archive copy (server-side,
    slow for a large object) is made while its first records are read; the batch enters the ledger once the copy is
    there, before a record is written. A copy refused because the file has gone or changed since it was downloaded
    makes the file's quarantine row, as when it is refused before."""
    with ThreadPoolExecutor(1, thread_name_prefix="archive-copy") as archiver:
        copying = archiver.submit(file.archive_copy) if file.archive_copy is not None else None

        def archive_then_enter() -> None:
            if copying is not None:
                copying.result()
            enter_batch(engine, file.entry)

        try:
            counts = stage_file(
                engine,
                file.entry.batch_id,
                file.obj.key,
                local.path,
                reading.accepted,
                replay=False,
                location=file.location,
                array_keys=reading.array_keys,
                before_writing=archive_then_enter,
            )
        except (ClientError, BotoCoreError) as error:
            if copying is None or copying.exception() is not error or not _file_unreadable(error, archiving=True):
                raise
            obj = file.obj
            counts = _quarantine_unreadable(engine, obj, file.entry.source_uri, error, reading.accepted)
            return IngestedFile(
                obj.batch_id, None, UNREAD_SHA256, obj.size, False, counts, time.perf_counter() - file.started
            )
    return _ingested(file, counts)


def _ingested(file: FetchedFile, counts: StagingCounts) -> IngestedFile:
    entry = file.entry
    return IngestedFile(
        entry.batch_id,
        entry.archive_key,
        entry.sha256,
        entry.byte_count,
        file.newly_archived,
        counts,
        time.perf_counter() - file.started,
    )


@dataclass(frozen=True)
class FileOutcome:
    """What became of one file of a run: ingested, failed with ``error``, or (neither) not tried."""

    obj: LandingObject
    ingested: IngestedFile | None = None
    error: BaseException | None = None


class _Streak:
    """Failures in a row, over the run's fetches and stagings: after ``limit`` of them, no more file is tried."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._in_a_row = 0
        self._lock = threading.Lock()
        self.given_up = False

    def failed(self) -> None:
        with self._lock:
            self._in_a_row += 1
            self.given_up = self.given_up or self._in_a_row >= self._limit

    def succeeded(self) -> None:
        with self._lock:
            self._in_a_row = 0


def ingest_landing_objects(
    client: Any,
    engine: Engine,
    objects: Sequence[LandingObject],
    *,
    landing_bucket: str,
    archive_bucket: str,
    reading: Reading,
    at_once: int,
    give_up_after: int,
) -> Iterator[FileOutcome]:
    """The files of a run, each a batch of its own, ``at_once`` fetched at a time (``fetch_landing_object``) and
    staged in their order (``stage_fetched``); what became of each, in their order, as it is staged. The ledger is
    read once for all of them. A file that fails does not stop the others; after ``give_up_after`` failures in a
    row (the store or the database is down, not the files), the files not started yet are not tried."""
    known = find_batches(engine, [obj.batch_id for obj in objects])
    streak = _Streak(give_up_after)

    def fetch(obj: LandingObject) -> IngestedFile | FetchedFile | None:
        if streak.given_up:
            return None
        try:
            fetched = fetch_landing_object(
                client,
                engine,
                obj,
                known.get(obj.batch_id),
                landing_bucket=landing_bucket,
                archive_bucket=archive_bucket,
                reading=reading,
            )
        except Exception:
            streak.failed()
            raise
        streak.succeeded()
        return fetched

    waiting: deque[tuple[LandingObject, Future[IngestedFile | FetchedFile | None]]] = deque()
    upcoming = iter(objects)
    pool = ThreadPoolExecutor(max(1, at_once), thread_name_prefix="landing-file")

    def fetch_ahead() -> None:
        waiting_bytes = sum(_bytes_ahead(obj, future) for obj, future in waiting)
        while len(waiting) < FILES_AHEAD:
            obj = next(upcoming, None)
            if obj is None:
                return
            waiting.append((obj, pool.submit(fetch, obj)))
            waiting_bytes += obj.size
            if waiting_bytes >= BYTES_AHEAD:
                return

    try:
        fetch_ahead()
        while waiting:
            obj, future = waiting.popleft()
            try:
                fetched = future.result()
            except Exception as error:
                fetch_ahead()
                yield FileOutcome(obj, error=error)
                continue
            if not isinstance(fetched, FetchedFile):
                fetch_ahead()
                yield FileOutcome(obj, ingested=fetched)
                continue
            group = [fetched]
            while fetched.prepared is not None and waiting and (next_small := _fetched_small(waiting[0][1])):
                waiting.popleft()
                group.append(next_small)
            fetch_ahead()
            yield from _stage_in_order(engine, group, reading, streak)
    finally:
        for _, future in waiting:
            future.cancel()
        pool.shutdown(wait=True)
        for _, future in waiting:
            if (unstaged := _fetched(future)) is not None:
                unstaged.close()


def _fetched(future: Future[IngestedFile | FetchedFile | None]) -> FetchedFile | None:
    """The file ``future`` fetched, when it is done with one waiting to be staged."""
    if not future.done() or future.cancelled() or future.exception() is not None:
        return None
    result = future.result()
    return result if isinstance(result, FetchedFile) else None


def _fetched_small(future: Future[IngestedFile | FetchedFile | None]) -> FetchedFile | None:
    """The small file ``future`` fetched and read, ready to stage with others, if it is done with one."""
    fetched = _fetched(future)
    return fetched if fetched is not None and fetched.prepared is not None else None


def _bytes_ahead(obj: LandingObject, future: Future[IngestedFile | FetchedFile | None]) -> int:
    """What a file fetched ahead holds: its records as read when it is a small file fetched, else its size as listed."""
    fetched = _fetched_small(future)
    return obj.size if fetched is None or fetched.prepared is None else fetched.prepared.record_bytes


def _stage_in_order(engine: Engine, group: list[FetchedFile], reading: Reading, streak: _Streak) -> list[FileOutcome]:
    """Stage ``group`` (fetched files next to each other in the run) together; when that fails for a reason that
    waiting would not cure, each file alone, in order, so only a file that cannot be staged fails."""
    try:
        try:
            staged = stage_fetched(engine, group, reading)
        except Exception as error:
            if len(group) > 1 and not is_transient(error):
                return [outcome for file in group for outcome in _stage_in_order(engine, [file], reading, streak)]
            for _ in group:
                streak.failed()
            return [FileOutcome(file.obj, error=error) for file in group]
        streak.succeeded()
        return [FileOutcome(file.obj, ingested=ingested) for file, ingested in zip(group, staged, strict=True)]
    finally:
        for file in group:
            file.close()


def _file_unreadable(error: BaseException, archiving: bool) -> bool:
    """Whether ``error`` says this file cannot be read, for good: any permanent refusal to read it, or a copy
    refused because the object is gone or changed (a copy refused otherwise is the archive's problem)."""
    if is_transient_s3_error(error):
        return False
    if archiving:
        return s3_error_code(error) in ("NoSuchKey", "PreconditionFailed")
    return True


def _quarantine_unreadable(
    engine: Engine, obj: LandingObject, source_uri: str, error: BaseException, accepted: AcceptedTimes
) -> StagingCounts:
    why = _WHY_UNREADABLE.get(s3_error_code(error) or "", "")
    reason = (
        f"could not read the file ({describe_s3_error(error)}{': ' + why if why else ''}); {source_uri}, not archived"
    )
    record_batch(
        engine,
        batch_id=obj.batch_id,
        source=SOURCE,
        source_uri=source_uri,
        archive_key=None,
        sha256=UNREAD_SHA256,
        byte_count=obj.size,
    )
    return stage_records(engine, obj.batch_id, SOURCE, [RejectedRecord(0, reason, b"")], accepted)


def stage_file(
    engine: Engine,
    batch_id: str,
    name: str,
    path: Path,
    accepted: AcceptedTimes,
    *,
    replay: bool,
    location: str,
    array_keys: Sequence[str] | None = None,
    before_writing: Callable[[], None] | None = None,
) -> StagingCounts:
    """Stage a downloaded file, read as its bytes say (a replay reads an archived copy). ``location`` (where the
    file came from and is archived) completes the reason of a quarantine row about the whole file;
    ``array_keys`` default to ETL_JSON_ARRAY_KEYS; ``before_writing`` as ``stage_records`` runs it."""
    keys = Settings.from_env().json_array_keys if array_keys is None else array_keys
    with path.open("rb") as stream:
        records = _located(read_file(stream, name, array_keys=keys), location)
        return stage_records(engine, batch_id, SOURCE, records, accepted, replay=replay, before_writing=before_writing)


def _located(
    records: Iterable[ParsedRecord | RejectedRecord], location: str
) -> Iterator[ParsedRecord | RejectedRecord]:
    for record in records:
        if isinstance(record, RejectedRecord) and record.record_no == 0:
            yield RejectedRecord(0, f"{record.reason} ({location})", record.raw)
        else:
            yield record
