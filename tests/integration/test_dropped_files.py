"""Files as real exports and stream writers drop them, through the real S3 endpoint, the landing sensor and the
ingest runs it requests, then the merge of their days, against a real PostgreSQL.

Each test reads what one file became: exactly which records were staged and which were quarantined, with the
reason. The files run once for the module; every day they touch reconciles, and so does every batch.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from botocore.exceptions import ClientError
from sqlalchemy import Engine, text

from etl_assets.defs.ingest import requested_objects
from etl_assets.localstack.postgres import EmbeddedPostgres
from etl_assets.quality.reconciliation import reconcile_batches, reconcile_day
from etl_assets.sources.landing import SOURCE, LandingObject, archive_key, archive_object, metadata_text, run_key
from etl_assets.sources.landing_ingest import (
    SMALL_FILE_BYTES,
    UNREAD_SHA256,
    FetchedFile,
    Reading,
    fetch_landing_object,
    ingest_landing_object,
    stage_fetched,
)
from etl_assets.sources.s3 import s3_client
from etl_assets.transform.normalize import AcceptedTimes
from etl_assets.transform.records import RejectedRecord
from etl_assets.warehouse.engine import create_warehouse_engine
from etl_assets.warehouse.staging import DEFAULT_CHUNK_SIZE, record_batch, stage_records
from tests.conftest import S3_CREDENTIALS, migrated_database, new_buckets, pipeline_variables
from tests.harness import pipeline

PREFIX = "landing/drop/"
PARQUET_EVENTS = 100_000
PARQUET_DAY = date(2025, 9, 14)
TRUNCATED_EVENTS = 5_000


def event(event_id: str, day: int = 10, **fields: Any) -> dict:
    return {
        "id": event_id,
        "type": "page_view",
        "timestamp": f"2025-09-{day:02d}T10:00:00Z",
        "user_id": "u1",
        **fields,
    }


def jsonl(*events: dict) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in events)


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def parquet_file(count: int) -> bytes:
    start = datetime.combine(PARQUET_DAY, datetime.min.time(), UTC)
    table = pa.table(
        {
            "id": [f"pq-{n}" for n in range(count)],
            "type": ["page_view"] * count,
            "timestamp": [start + timedelta(seconds=n // 2) for n in range(count)],
            "user_id": [f"user-{n % 997}" for n in range(count)],
            "page_url": [f"https://shop.example/p/{n % 50}" for n in range(count)],
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=10_000)
    return sink.getvalue()


def truncated_zstd() -> tuple[bytes, int]:
    """5,000 events of 2025-09-13 in a zstd stream (several blocks) cut in half; and how many whole lines the cut
    stream holds."""
    plain = b"".join(
        json.dumps(event(f"z{n}", 13, noise=zlib.crc32(bytes(n)) * n)).encode() + b"\n" for n in range(TRUNCATED_EVENTS)
    )
    whole = zstd(plain)
    cut = whole[: len(whole) // 2]
    readable = zstandard.ZstdDecompressor().decompressobj().decompress(cut)
    return cut, readable.count(b"\n")


UNICODE_KEY = f"{PREFIX}été 2026/orders (1) #€&+=;%20 ünïcødé 注文.jsonl"
TRUNCATED_ZSTD, WHOLE_LINES_BEFORE_CUT = truncated_zstd()
PARQUET = parquet_file(PARQUET_EVENTS)
FILES = {
    UNICODE_KEY: jsonl(event("uni-1"), event("uni-2")),
    f"{PREFIX}double.jsonl.gz": gzip.compress(gzip.compress(jsonl(event("gz2-1", 11), event("gz2-2", 11)))),
    f"{PREFIX}array.json": json.dumps([event("arr-1", 11), event("arr-2", 12), 42]).encode(),
    f"{PREFIX}wrapped.json": json.dumps({"meta": {"count": 2}, "data": [event("wrap-1", 12), event("wrap-2", 12)]})
    .replace("[", "[\n  ")
    .encode(),
    f"{PREFIX}export.csv.bz2": bz2.compress(
        b"id,type,timestamp,user_id\r\nbz-1,page_view,2025-09-12T10:00:00Z,u1\r\nbz-2,page_view,2025-09-12T11:00:00Z,u1\r\n"
    ),
    f"{PREFIX}stream.jsonl.zst": zstd(jsonl(event("zs-1", 13), event("zs-2", 13))),
    f"{PREFIX}part-00000.parquet": PARQUET,
    f"{PREFIX}truncated.jsonl.zst": TRUNCATED_ZSTD,
    f"{PREFIX}vanishes.jsonl": jsonl(event("gone-1")),
}
VANISHING = f"{PREFIX}vanishes.jsonl"


@dataclass
class Landed:
    engine: Engine
    s3: Any
    buckets: dict[str, str]
    batch_ids: dict[str, str]
    requests: list[dg.RunRequest]
    runs: list[dg.ExecuteInProcessResult]
    batches_reconciled: list[dg.AssetCheckEvaluation]

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(text(sql), params).mappings()]

    def staged(self, key: str) -> dict[int, str]:
        """Record number → event id of what the file staged."""
        rows = self.rows(
            "SELECT record_no, event_id FROM staging_events WHERE batch_id = :b ORDER BY record_no",
            b=self.batch_ids[key],
        )
        return {row["record_no"]: row["event_id"] for row in rows}

    def quarantined(self, key: str) -> dict[int, str]:
        """Record number → reason of the file's quarantine rows."""
        rows = self.rows(
            "SELECT record_no, reason FROM quarantine WHERE batch_id = :b ORDER BY record_no", b=self.batch_ids[key]
        )
        return {row["record_no"]: row["reason"] for row in rows}

    def ledger(self, key: str) -> dict[str, Any]:
        (row,) = self.rows("SELECT * FROM raw_batches WHERE batch_id = :b", b=self.batch_ids[key])
        return row

    def in_events(self, *event_ids: str) -> set[str]:
        return {
            row["event_id"]
            for row in self.rows("SELECT event_id FROM events WHERE event_id = ANY(:ids)", ids=list(event_ids))
        }


@pytest.fixture(scope="module")
def landed(postgres_server: EmbeddedPostgres, migrated_template: str, s3_endpoint: str) -> Iterator[Landed]:
    s3 = s3_client(s3_endpoint, "us-east-1", **S3_CREDENTIALS)
    buckets = new_buckets(s3)
    with (
        migrated_database(postgres_server, migrated_template) as url,
        pytest.MonkeyPatch.context() as monkeypatch,
    ):
        for name, value in pipeline_variables(url, s3_endpoint, buckets).items():
            monkeypatch.setenv(name, value)
        batch_ids = {
            key: f"{key}#{s3.put_object(Bucket=buckets['landing'], Key=key, Body=body)['ETag'].strip(chr(34))}"
            for key, body in FILES.items()
        }
        from etl_assets.definitions import defs

        engine = create_warehouse_engine(url, pool_size=2, max_overflow=2)
        try:
            with pipeline(defs()) as run:
                requests = run.tick("landing_files_sensor")
                s3.delete_object(Bucket=buckets["landing"], Key=VANISHING)  # gone between listing and its run
                run.execute("landing_files_sensor", requests)
                run.tick_and_run("staged_days_sensor")
                assert run.tick("landing_files_sensor") == [] and run.tick("staged_days_sensor") == []
                checks = run.check_evaluations("batches_reconciled", "data_quality_job")
                yield Landed(engine, s3, buckets, batch_ids, requests, run.runs, checks)
        finally:
            engine.dispose()


def test_every_file_ran_once_each_run_succeeded_and_each_file_has_its_batch(landed: Landed):
    ingests = [run for run in landed.runs if run.job_def.name == "ingest_landing_file_job"]
    requested = [obj.batch_id for request in landed.requests for obj in requested_objects(request.run_config)]
    assert sorted(requested) == sorted(landed.batch_ids.values())
    assert len(ingests) == len(landed.requests) == 1  # small files: one run holds them all
    assert all(run.success for run in landed.runs)
    assert {row["batch_id"] for row in landed.rows("SELECT batch_id FROM raw_batches")} == set(
        landed.batch_ids.values()
    )


def test_a_non_ascii_key_with_spaces_and_symbols_loads_under_its_real_name(landed: Landed):
    assert landed.staged(UNICODE_KEY) == {1: "uni-1", 2: "uni-2"}
    assert landed.quarantined(UNICODE_KEY) == {}
    [request] = [r for r in landed.requests if UNICODE_KEY in {obj.key for obj in requested_objects(r.run_config)}]
    assert request.run_key == run_key(requested_objects(request.run_config))
    ledger = landed.ledger(UNICODE_KEY)
    assert ledger["source_uri"] == f"s3://{landed.buckets['landing']}/{UNICODE_KEY}"
    assert ledger["archive_key"].endswith(f"/{UNICODE_KEY}")
    archived = landed.s3.head_object(Bucket=landed.buckets["archive"], Key=ledger["archive_key"])
    assert metadata_text(archived["Metadata"]["source-key"]) == UNICODE_KEY
    assert archived["Metadata"]["source-key"].isascii()
    (table,) = [
        materialization.metadata["files loaded"]
        for run in landed.runs
        for materialization in run.asset_materializations_for_node("ingest_landing_file")
        if "files loaded" in materialization.metadata
    ]
    (loaded,) = [record.data for record in table.records if record.data["file"] == UNICODE_KEY]
    assert (loaded["records"], loaded["staged"], loaded["quarantined"]) == (2, 2, 0)
    assert landed.in_events("uni-1", "uni-2") == {"uni-1", "uni-2"}


def test_a_gzip_inside_a_gzip_is_unwrapped_and_loads(landed: Landed):
    key = f"{PREFIX}double.jsonl.gz"
    assert landed.staged(key) == {1: "gz2-1", 2: "gz2-2"}
    assert landed.quarantined(key) == {}
    assert (landed.ledger(key)["record_count"], landed.ledger(key)["quarantined_count"]) == (2, 0)


def test_a_json_array_loads_its_objects_and_quarantines_what_is_not_one(landed: Landed):
    key = f"{PREFIX}array.json"
    assert landed.staged(key) == {1: "arr-1", 2: "arr-2"}
    assert landed.quarantined(key) == {3: "record is a JSON number, not an object"}


def test_a_document_holding_its_events_under_data_loads_them(landed: Landed):
    key = f"{PREFIX}wrapped.json"
    assert landed.staged(key) == {1: "wrap-1", 2: "wrap-2"}
    assert landed.quarantined(key) == {}


def test_bzip2_csv_and_zstd_jsonl_load(landed: Landed):
    assert landed.staged(f"{PREFIX}export.csv.bz2") == {2: "bz-1", 3: "bz-2"}
    assert landed.staged(f"{PREFIX}stream.jsonl.zst") == {1: "zs-1", 2: "zs-2"}
    assert landed.quarantined(f"{PREFIX}export.csv.bz2") == landed.quarantined(f"{PREFIX}stream.jsonl.zst") == {}
    assert landed.in_events("bz-1", "bz-2", "zs-1", "zs-2") == {"bz-1", "bz-2", "zs-1", "zs-2"}


def test_a_parquet_file_of_100000_events_loads_every_row(landed: Landed):
    key = f"{PREFIX}part-00000.parquet"
    staged = landed.staged(key)
    assert len(staged) == PARQUET_EVENTS
    assert staged[1] == "pq-0" and staged[PARQUET_EVENTS] == f"pq-{PARQUET_EVENTS - 1}"
    assert landed.quarantined(key) == {}
    (row,) = landed.rows(
        "SELECT count(*) AS events, min(occurred_at) AS first FROM events WHERE batch_id = :b",
        b=landed.batch_ids[key],
    )
    assert row == {"events": PARQUET_EVENTS, "first": datetime.combine(PARQUET_DAY, datetime.min.time(), UTC)}


def test_a_truncated_zstd_file_loads_the_whole_records_before_the_cut_and_quarantines_the_rest(landed: Landed):
    key = f"{PREFIX}truncated.jsonl.zst"
    assert 1_000 < WHOLE_LINES_BEFORE_CUT < TRUNCATED_EVENTS
    assert landed.staged(key) == {n + 1: f"z{n}" for n in range(WHOLE_LINES_BEFORE_CUT)}
    assert landed.quarantined(key) == {WHOLE_LINES_BEFORE_CUT + 1: "file truncated: the zstd stream ends early"}
    ledger = landed.ledger(key)
    assert (ledger["record_count"], ledger["quarantined_count"]) == (WHOLE_LINES_BEFORE_CUT + 1, 1)


def test_a_file_deleted_before_its_run_is_one_quarantine_row_and_its_run_succeeds(landed: Landed):
    ledger = landed.ledger(VANISHING)
    source = f"s3://{landed.buckets['landing']}/{VANISHING}"
    assert landed.quarantined(VANISHING) == {
        0: f"could not read the file (NoSuchKey, HTTP 404: it was deleted after it was listed); {source}, not archived"
    }
    assert landed.staged(VANISHING) == {}
    assert (ledger["archive_key"], ledger["record_count"], ledger["quarantined_count"]) == (None, 1, 1)


def test_every_day_and_every_batch_reconciles(landed: Landed):
    days = [row["day"] for row in landed.rows("SELECT DISTINCT event_day AS day FROM staging_events ORDER BY 1")]
    assert days == [date(2025, 9, day) for day in (10, 11, 12, 13, 14)]
    for day in days:
        reconciled = reconcile_day(landed.engine, day)
        assert reconciled.balanced and reconciled.total("pending") == 0, day
    batches = reconcile_batches(landed.engine, within_days=1)
    assert len(batches) == len(FILES)
    assert [(batch.batch_id, batch.problem) for batch in batches if batch.problem] == []
    assert landed.batches_reconciled and all(evaluation.passed for evaluation in landed.batches_reconciled)


PEAK_MEMORY_SCRIPT = """
import json, sys, threading, time
from datetime import UTC, date, datetime
import psutil
from etl_assets.sources.landing import LandingObject
from etl_assets.sources.landing_ingest import (
    SMALL_FILE_BYTES,
    FetchedFile,
    Reading,
    fetch_landing_object,
    ingest_landing_object,
    stage_fetched,
)
from etl_assets.sources.s3 import s3_client
from etl_assets.transform.normalize import AcceptedTimes
from etl_assets.transform.records import RejectedRecord
from etl_assets.warehouse.engine import create_warehouse_engine
import pyarrow, pyarrow.parquet

url, endpoint, landing, archive, key, etag = sys.argv[1:]
client = s3_client(endpoint, "us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
engine = create_warehouse_engine(url, pool_size=1, max_overflow=1)
with engine.connect():
    pass
me = psutil.Process()
before = me.memory_info().rss
peak = before
done = threading.Event()

def sample():
    global peak
    while not done.is_set():
        peak = max(peak, me.memory_info().rss)
        time.sleep(0.02)

sampler = threading.Thread(target=sample)
sampler.start()
ingested = ingest_landing_object(
    client, engine, LandingObject(key, etag, 0), landing_bucket=landing, archive_bucket=archive,
    accepted=AcceptedTimes.through_today(date(2025, 1, 1), datetime.now(UTC)),
)
done.set()
sampler.join()
print(json.dumps({"records": ingested.counts.records, "before": before, "peak": peak,
                  "arrow_peak": pyarrow.default_memory_pool().max_memory()}))
"""


def peak_memory_staging(events: int, url: str, s3: Any, s3_endpoint: str, buckets: dict[str, str]) -> dict:
    """Stage a Parquet file of ``events`` events in a process of its own; what its memory did meanwhile."""
    key = f"{PREFIX}memory/{events}/part-00000.parquet"
    etag = s3.put_object(Bucket=buckets["landing"], Key=key, Body=parquet_file(events))["ETag"].strip('"')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETL_", "AWS_", "DATABASE_URL"))}
    arguments = [url, s3_endpoint, buckets["landing"], buckets["archive"], key, etag]
    done = subprocess.run(
        [sys.executable, "-c", PEAK_MEMORY_SCRIPT, *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["records"] == events
    figures["grown_mib"] = (figures["peak"] - figures["before"]) / 2**20
    print(
        f"\n{events:,} Parquet events ({len(parquet_file(events)) / 2**20:.1f} MiB file): peak RSS "
        f"{figures['peak'] / 2**20:.0f} MiB, {figures['grown_mib']:.0f} MiB above the process before the file, "
        f"Arrow pool peak {figures['arrow_peak'] / 2**20:.1f} MiB"
    )
    return figures


def test_a_parquet_file_is_staged_in_memory_bounded_by_the_batch_not_the_file(
    postgres_server: EmbeddedPostgres, migrated_template: str, s3_endpoint: str
):
    """A Parquet file of one staging chunk (20,000 events) and one of five (100,000), each staged by a process of
    its own: the bigger file's peak resident memory is about the smaller one's, since a row group and a staging
    chunk at a time are in memory (the 100,000 events as Python objects alone would take some 200 MB more)."""
    s3 = s3_client(s3_endpoint, "us-east-1", **S3_CREDENTIALS)
    buckets = new_buckets(s3)
    with migrated_database(postgres_server, migrated_template) as url:
        one_chunk = peak_memory_staging(DEFAULT_CHUNK_SIZE, url, s3, s3_endpoint, buckets)
        five_chunks = peak_memory_staging(PARQUET_EVENTS, url, s3, s3_endpoint, buckets)
    assert five_chunks["grown_mib"] < one_chunk["grown_mib"] + 40


ACCEPTED_SINCE_2025 = AcceptedTimes.through_today(date(2025, 1, 1), datetime.now(UTC))


def ingest(s3, engine: Engine, buckets: dict[str, str], obj: LandingObject, *, archive_bucket: str | None = None):
    """``obj`` through ``ingest_landing_object``, as a run ingests it, into the test's buckets."""
    return ingest_landing_object(
        s3,
        engine,
        obj,
        landing_bucket=buckets["landing"],
        archive_bucket=archive_bucket or buckets["archive"],
        accepted=ACCEPTED_SINCE_2025,
    )


def test_a_rerun_after_the_archive_copy_reads_the_archive_even_when_the_landing_file_is_gone(
    s3, buckets: dict[str, str], warehouse_engine: Engine
):
    """A run that archived the file and entered its batch, then died, is run again after the landing object was
    deleted: the batch is staged from its archived bytes, not quarantined as unreadable."""
    key = f"{PREFIX}rerun/é.jsonl"
    body = jsonl(event("rerun-1"), event("rerun-2"))
    etag = s3.put_object(Bucket=buckets["landing"], Key=key, Body=body)["ETag"].strip('"')
    obj = LandingObject(key, etag, len(body))
    archived_as = archive_key(SOURCE, date(2025, 9, 20), obj)
    archive_object(s3, buckets["landing"], obj, buckets["archive"], archived_as, hashlib.sha256(body).hexdigest())
    record_batch(
        warehouse_engine,
        batch_id=obj.batch_id,
        source=SOURCE,
        source_uri=f"s3://{buckets['landing']}/{key}",
        archive_key=archived_as,
        sha256=hashlib.sha256(body).hexdigest(),
        byte_count=len(body),
    )
    s3.delete_object(Bucket=buckets["landing"], Key=key)
    ingested = ingest(s3, warehouse_engine, buckets, obj)
    assert (ingested.archive_key, ingested.counts.staged, ingested.counts.quarantined) == (archived_as, 2, 0)


def larger_file(name: str, events: int = 3_000) -> bytes:
    body = jsonl(*(event(f"{name}-{number}", padding="x" * 80) for number in range(events)))
    assert len(body) > SMALL_FILE_BYTES  # staged in chunks, its archive copy made while its first records are read
    return body


def ledger_and_staging(engine: Engine, batch_id: str) -> tuple[dict[str, Any] | None, int]:
    with engine.connect() as conn:
        ledger = (
            conn.execute(
                text("SELECT archive_key, record_count, quarantined_count FROM raw_batches WHERE batch_id = :b"),
                {"b": batch_id},
            )
            .mappings()
            .first()
        )
        staged = conn.scalar(text("SELECT count(*) FROM staging_events WHERE batch_id = :b"), {"b": batch_id})
    return (dict(ledger) if ledger else None), staged


def test_a_larger_file_deleted_before_its_archive_copy_is_one_quarantine_row_and_nothing_staged(
    s3, buckets: dict[str, str], warehouse_engine: Engine
):
    key = f"{PREFIX}larger/deleted.jsonl"
    etag = s3.put_object(Bucket=buckets["landing"], Key=key, Body=larger_file("deleted"))["ETag"].strip('"')
    obj = LandingObject(key, etag, 0)
    reading = Reading.of(ACCEPTED_SINCE_2025)
    fetched = fetch_landing_object(
        s3,
        warehouse_engine,
        obj,
        None,
        landing_bucket=buckets["landing"],
        archive_bucket=buckets["archive"],
        reading=reading,
    )
    assert isinstance(fetched, FetchedFile) and fetched.local is not None
    s3.delete_object(Bucket=buckets["landing"], Key=key)  # downloaded, then deleted before the archive copy
    try:
        [ingested] = stage_fetched(warehouse_engine, [fetched], reading)
    finally:
        fetched.close()
    assert (ingested.archive_key, ingested.counts.staged, ingested.counts.quarantined) == (None, 0, 1)
    ledger, staged = ledger_and_staging(warehouse_engine, obj.batch_id)
    assert (ledger, staged) == ({"archive_key": None, "record_count": 1, "quarantined_count": 1}, 0)
    with warehouse_engine.connect() as conn:
        reason = conn.scalar(text("SELECT reason FROM quarantine WHERE batch_id = :b"), {"b": obj.batch_id})
    assert "it was deleted after it was listed" in reason


def test_a_larger_file_whose_archive_copy_fails_enters_neither_the_ledger_nor_staging(
    s3, buckets: dict[str, str], warehouse_engine: Engine
):
    """Nothing of a batch is written before its bytes are archived: a copy refused for a reason that is not the
    file's (here the archive bucket is missing) fails the file, and a re-run starts from the landing object."""
    key = f"{PREFIX}larger/no-archive.jsonl"
    etag = s3.put_object(Bucket=buckets["landing"], Key=key, Body=larger_file("no-archive"))["ETag"].strip('"')
    obj = LandingObject(key, etag, 0)
    with pytest.raises(ClientError, match="NoSuchBucket"):
        ingest(s3, warehouse_engine, buckets, obj, archive_bucket=f"{buckets['archive']}-missing")
    assert ledger_and_staging(warehouse_engine, obj.batch_id) == (None, 0)
    ingested = ingest(s3, warehouse_engine, buckets, obj)
    assert (ingested.counts.staged, ingested.counts.quarantined) == (3_000, 0)
    archived = s3.head_object(Bucket=buckets["archive"], Key=ingested.archive_key)
    assert archived["Metadata"]["sha256"] == ingested.sha256


def test_a_file_read_after_a_run_entered_it_as_unreadable_and_died_is_archived_and_counted_once(
    s3, buckets: dict[str, str], warehouse_engine: Engine
):
    """A run found the file unreadable, entered it in the ledger with no archive copy, staged its "could not read"
    row and died before closing the batch; the next attempt can read it: the ledger takes the archive copy and the
    checksum, and the open row is resolved, so the batch can be replayed and its records are counted once."""
    key = f"{PREFIX}unread-then-read.jsonl"
    body = jsonl(event("unread-1"), event("unread-2"))
    etag = s3.put_object(Bucket=buckets["landing"], Key=key, Body=body)["ETag"].strip('"')
    obj = LandingObject(key, etag, len(body))
    accepted = ACCEPTED_SINCE_2025
    record_batch(
        warehouse_engine,
        batch_id=obj.batch_id,
        source=SOURCE,
        source_uri=f"s3://{buckets['landing']}/{key}",
        archive_key=None,
        sha256=UNREAD_SHA256,
        byte_count=len(body),
    )
    stage_records(warehouse_engine, obj.batch_id, SOURCE, [RejectedRecord(0, "could not read the file", b"")], accepted)
    with warehouse_engine.begin() as conn:  # the run died before the batch was closed
        conn.execute(text("UPDATE raw_batches SET staged_at = NULL WHERE batch_id = :b"), {"b": obj.batch_id})

    ingested = ingest(s3, warehouse_engine, buckets, obj)
    assert (ingested.counts.staged, ingested.newly_archived) == (2, True)
    ledger, staged = ledger_and_staging(warehouse_engine, obj.batch_id)
    assert (ledger, staged) == ({"archive_key": ingested.archive_key, "record_count": 2, "quarantined_count": 0}, 2)
    with warehouse_engine.connect() as conn:
        sha256 = conn.scalar(text("SELECT sha256 FROM raw_batches WHERE batch_id = :b"), {"b": obj.batch_id})
        still_open = conn.scalar(
            text("SELECT count(*) FROM quarantine WHERE batch_id = :b AND resolved_at IS NULL"), {"b": obj.batch_id}
        )
    assert (sha256, still_open) == (hashlib.sha256(body).hexdigest(), 0)
    assert s3.head_object(Bucket=buckets["archive"], Key=ingested.archive_key)["Metadata"]["sha256"] == sha256
