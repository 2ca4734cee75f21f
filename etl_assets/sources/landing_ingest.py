"""One landing file end to end into staging: archive its bytes, enter it in the ledger, parse, stage.

Order matters for "nothing lost": the bytes are in the raw archive and the batch in ``raw_batches``
(with its SHA-256) before a single record is staged: a small file's ledger row, records and close commit in one
transaction, a larger file's staging commits chunk by chunk, and a re-run of the same batch stages only what is
missing. Replays (``sources/replay.py``) read the archive, never the
landing bucket.

Every file is accounted for: its records are staged or quarantined, or, when the file cannot be read at all
(gone, changed or refused since it was listed; of no shape read here; compressed too deep; holding no record),
one quarantine row (``record_no`` 0) says why, naming the file and where its bytes are archived. A file the store
refuses for good is such a row too, entered in the ledger without an archive copy, and its run succeeds.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy import Engine

from etl_assets.settings import Settings
from etl_assets.sources.landing import SOURCE, LandingObject, archive_key, archive_object, download
from etl_assets.sources.s3 import describe_s3_error, is_transient_s3_error, s3_error_code
from etl_assets.transform.normalize import AcceptedTimes
from etl_assets.transform.records import ParsedRecord, RejectedRecord, read_file
from etl_assets.warehouse.staging import (
    BatchEntry,
    StagingCounts,
    find_batch,
    record_batch,
    stage_batch,
    stage_records,
)

UNREAD_SHA256 = ""
"""The ledger's checksum of a file whose bytes could not be read (its ``archive_key`` is empty too)."""
SMALL_FILE_BYTES = 256 * 2**10
"""A landing file up to this size (as stored, compressed or not) is staged in one transaction with its ledger row;
a larger one in chunks of its own transactions, so memory stays bounded by the chunk."""

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
    staging_turn: AbstractContextManager[Any] | None = None,
) -> IngestedFile:
    """``staging_turn``: entered around the staging of the records (after the download and the archive copy), so the
    files of a run loaded side by side stage in the run's order."""
    started = time.perf_counter()
    known = find_batch(engine, obj.batch_id)
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
    try:
        with download(client, bucket, read_key, etag) as local:
            if archived:
                key, newly_archived = archived, False
            else:
                key = archive_key(SOURCE, today or datetime.now(UTC).date(), obj)
                archiving = True
                archive_object(client, landing_bucket, obj, archive_bucket, key, local.sha256)
                archiving = False
                newly_archived = known is None
            location = f"{source_uri}, archived as s3://{archive_bucket}/{key}"
            entry = BatchEntry(obj.batch_id, SOURCE, source_uri, key, local.sha256, local.byte_count)
            with staging_turn or nullcontext():
                if local.byte_count <= SMALL_FILE_BYTES:
                    counts = stage_small_file(engine, entry, obj.key, local.path, accepted, location, array_keys)
                else:
                    newly_archived = record_batch(
                        engine,
                        batch_id=entry.batch_id,
                        source=entry.source,
                        source_uri=entry.source_uri,
                        archive_key=entry.archive_key,
                        sha256=entry.sha256,
                        byte_count=entry.byte_count,
                    )
                    counts = stage_file(
                        engine,
                        obj.batch_id,
                        obj.key,
                        local.path,
                        accepted,
                        replay=False,
                        location=location,
                        array_keys=array_keys,
                    )
    except (ClientError, BotoCoreError) as error:
        if archived or not _file_unreadable(error, archiving):
            raise
        counts = _quarantine_unreadable(engine, obj, source_uri, error, accepted)
        return IngestedFile(obj.batch_id, None, UNREAD_SHA256, obj.size, False, counts, time.perf_counter() - started)
    return IngestedFile(
        obj.batch_id, key, local.sha256, local.byte_count, newly_archived, counts, time.perf_counter() - started
    )


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


def stage_small_file(
    engine: Engine,
    entry: BatchEntry,
    name: str,
    path: Path,
    accepted: AcceptedTimes,
    location: str,
    array_keys: Sequence[str] | None = None,
) -> StagingCounts:
    """Stage a small downloaded file in one transaction with its ledger row (as ``stage_batch`` does for a collector
    request): its records are read into memory first (``SMALL_FILE_BYTES`` bounds them), and the ledger entry, the
    staging rows, the quarantine and the batch's close commit together, once."""
    keys = Settings.from_env().json_array_keys if array_keys is None else array_keys
    with path.open("rb") as stream:
        records = list(_located(read_file(stream, name, array_keys=keys), location))
    return stage_batch(engine, entry, records, accepted)


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
) -> StagingCounts:
    """Stage a downloaded file, read as its bytes say (a replay reads an archived copy). ``location`` (where the
    file came from and is archived) completes the reason of a quarantine row about the whole file;
    ``array_keys`` default to ETL_JSON_ARRAY_KEYS."""
    keys = Settings.from_env().json_array_keys if array_keys is None else array_keys
    with path.open("rb") as stream:
        records = _located(read_file(stream, name, array_keys=keys), location)
        return stage_records(engine, batch_id, SOURCE, records, accepted, replay=replay)


def _located(
    records: Iterable[ParsedRecord | RejectedRecord], location: str
) -> Iterator[ParsedRecord | RejectedRecord]:
    for record in records:
        if isinstance(record, RejectedRecord) and record.record_no == 0:
            yield RejectedRecord(0, f"{record.reason} ({location})", record.raw)
        else:
            yield record
