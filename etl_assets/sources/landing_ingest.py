"""One landing file end to end into staging: archive its bytes, enter it in the ledger, parse, stage.

Order matters for "nothing lost": the bytes are in the raw archive and the batch in ``raw_batches``
(with its SHA-256) before a single record is staged; staging commits chunk by chunk, and a re-run of
the same batch stages only what is missing. Replays (``sources/replay.py``) read the archive, never the
landing bucket.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from etl_assets.sources.landing import SOURCE, LandingObject, archive_key, archive_object, download, head
from etl_assets.transform.normalize import AcceptedTimes
from etl_assets.transform.records import RejectedRecord, UnsupportedFile, detect_format, iter_records
from etl_assets.warehouse.staging import StagingCounts, find_batch, record_batch, stage_records


@dataclass(frozen=True)
class IngestedFile:
    batch_id: str
    archive_key: str
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
) -> IngestedFile:
    started = time.perf_counter()
    known = find_batch(engine, obj.batch_id)
    if known and known["archive_key"] and known["staged_at"] is not None:
        # Every chunk committed before the ledger's staged_at was set: a re-run (a retry, a re-materialization)
        # has nothing to add, so it reads neither the object nor the records. Replays re-stage on purpose.
        counts = StagingCounts(records=known["record_count"] or 0)
        counts.already_staged = counts.records - (known["quarantined_count"] or 0)
        return IngestedFile(
            obj.batch_id,
            known["archive_key"],
            known["sha256"],
            known["byte_count"],
            False,
            counts,
            time.perf_counter() - started,
        )
    with download(client, landing_bucket, obj.key, obj.etag) as local:
        if known and known["archive_key"]:
            key, newly_archived = known["archive_key"], False
        else:
            key = archive_key(SOURCE, today or datetime.now(UTC).date(), obj)
            archive_object(client, landing_bucket, obj, archive_bucket, key, local.sha256)
            newly_archived = record_batch(
                engine,
                batch_id=obj.batch_id,
                source=SOURCE,
                source_uri=f"s3://{landing_bucket}/{obj.key}",
                archive_key=key,
                sha256=local.sha256,
                byte_count=local.byte_count,
            )
        counts = stage_file(engine, obj.batch_id, obj.key, local.path, accepted, replay=False)
    return IngestedFile(
        obj.batch_id, key, local.sha256, local.byte_count, newly_archived, counts, time.perf_counter() - started
    )


def stage_file(
    engine: Engine, batch_id: str, name: str, path: Path, accepted: AcceptedTimes, *, replay: bool
) -> StagingCounts:
    """Stage a downloaded file, read as its name and first bytes say (a replay reads an archived copy)."""
    try:
        fmt, compressed = detect_format(name, head(path))
    except UnsupportedFile as error:
        records: Any = [RejectedRecord(record_no=0, reason=f"unsupported file: {error}", raw=b"")]
        return stage_records(engine, batch_id, SOURCE, records, accepted, replay=replay)
    with path.open("rb") as stream:
        return stage_records(engine, batch_id, SOURCE, iter_records(stream, fmt, compressed), accepted, replay=replay)
