"""Replay: re-stage archived batches of every source through today's parsing, from the raw archive.

A batch's archived bytes are read back (and checked against the SHA-256 in the ledger) and turned into
records by the same functions that staged them the first time: landing files by the file reader, API
pages by the page parser with the source's configuration, collector batches by ``request_records``. The
rows take what today's code makes of them and go back to pending; the next merge of their days runs
them through today's transform.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator, Mapping
from datetime import date, timedelta
from typing import Any

from botocore.exceptions import ClientError
from sqlalchemy import Engine, select

from etl_assets.sources.events_api import ApiSource
from etl_assets.sources.landing import SOURCE as S3_SOURCE
from etl_assets.sources.landing import DownloadedObject, download
from etl_assets.sources.landing_ingest import stage_file
from etl_assets.transform.api_pages import parse_page
from etl_assets.transform.days import day_start
from etl_assets.transform.inbound import InboundRequest, request_records
from etl_assets.transform.normalize import AcceptedTimes
from etl_assets.transform.records import ParsedRecord, RejectedRecord
from etl_assets.warehouse.schema import raw_batches
from etl_assets.warehouse.staging import StagingCounts, stage_records


class CannotReplay(ValueError):
    """A batch's archive cannot be read back; the message says which and why."""


def pruned_message(batch: Mapping[str, Any]) -> str:
    pruned_at = batch["archive_pruned_at"]
    return (
        f"batch {batch['batch_id']}: archive pruned by the retention job on {pruned_at:%Y-%m-%d} (older than "
        "ETL_RETENTION_DAYS), so it cannot be replayed; its events stay in the warehouse as they are"
    )


def archived_batches(engine: Engine, first_day: date, last_day: date) -> list[dict[str, Any]]:
    """Every archived batch received between ``first_day`` and ``last_day`` (UTC, inclusive), oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(raw_batches)
            .where(
                raw_batches.c.archive_key.is_not(None),
                raw_batches.c.received_at >= day_start(first_day),
                raw_batches.c.received_at < day_start(last_day + timedelta(days=1)),
            )
            .order_by(raw_batches.c.received_at, raw_batches.c.batch_id)
        ).mappings()
        return [dict(row) for row in rows]


def replay_batch(
    client: Any,
    engine: Engine,
    batch: Mapping[str, Any],
    archive_bucket: str,
    accepted: AcceptedTimes,
    api_sources: Mapping[str, ApiSource],
) -> StagingCounts:
    if batch.get("archive_pruned_at") is not None:
        raise CannotReplay(pruned_message(batch))
    try:
        with download(client, archive_bucket, batch["archive_key"]) as local:
            return _replay_downloaded(engine, batch, local, accepted, api_sources, archive_bucket)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
            raise
        raise CannotReplay(
            f"batch {batch['batch_id']}: its archived object s3://{archive_bucket}/{batch['archive_key']} is "
            "missing (deleted outside the platform?), so it cannot be replayed"
        ) from None


def _replay_downloaded(
    engine: Engine,
    batch: Mapping[str, Any],
    local: DownloadedObject,
    accepted: AcceptedTimes,
    api_sources: Mapping[str, ApiSource],
    archive_bucket: str,
) -> StagingCounts:
    source = batch["source"]
    if local.sha256 != batch["sha256"]:
        raise CannotReplay(
            f"archived object {batch['archive_key']} has SHA-256 {local.sha256}, the ledger says {batch['sha256']}"
        )
    if source == S3_SOURCE:
        name = batch["source_uri"].rsplit("/", 1)[-1]
        location = f"{batch['source_uri']}, archived as s3://{archive_bucket}/{batch['archive_key']}"
        return stage_file(engine, batch["batch_id"], name, local.path, accepted, replay=True, location=location)
    if source.startswith("api:"):
        api = api_sources.get(source)
        if api is None:
            raise CannotReplay(f"batch {batch['batch_id']} came from {source}, which is no longer configured")
        records: Iterator[ParsedRecord | RejectedRecord] = iter(
            parse_page(local.path.read_bytes(), api.records_field, None).records
        )
        return stage_records(engine, batch["batch_id"], source, records, accepted, replay=True)
    with gzip.open(local.path, "rb") as lines:
        requests = (InboundRequest.from_json_line(line) for line in lines if line.strip())
        return stage_records(engine, batch["batch_id"], source, request_records(requests), accepted, replay=True)
