"""The counts staging reports are the database's own row counts (runs show them; reconciliation adds them up)."""

from __future__ import annotations

import orjson
from sqlalchemy import Engine, text

from etl_assets.sources.landing import LandingObject
from etl_assets.sources.landing_ingest import ingest_landing_object
from etl_assets.transform.records import ParsedRecord
from etl_assets.warehouse.staging import record_batch, stage_records
from tests.harness import ACCEPTED


def test_the_ledger_says_whether_a_batch_is_new(warehouse_engine: Engine):
    entry = {"batch_id": "b1", "source": "s3", "source_uri": "s3://b/k", "archive_key": None, "sha256": "0" * 64}
    assert record_batch(warehouse_engine, **entry, byte_count=1) is True
    assert record_batch(warehouse_engine, **entry, byte_count=1) is False


def test_restaging_a_batch_counts_only_the_records_it_did_not_have(warehouse_engine: Engine):
    payloads = [{"id": f"e{n}", "type": "page_view", "timestamp": "2025-08-01T10:00:00Z"} for n in range(5)]
    records = [ParsedRecord(n, p, orjson.dumps(p).decode()) for n, p in enumerate(payloads, 1)]
    first = stage_records(warehouse_engine, "b1", "s3", records[:3], ACCEPTED)
    again = stage_records(warehouse_engine, "b1", "s3", records, ACCEPTED)
    assert (first.staged, first.already_staged) == (3, 0)
    assert (again.staged, again.already_staged) == (2, 3)


def _ingest(s3, buckets, engine: Engine, obj: LandingObject):
    return ingest_landing_object(
        s3, engine, obj, landing_bucket=buckets["landing"], archive_bucket=buckets["archive"], accepted=ACCEPTED
    )


def test_running_a_fully_staged_file_again_reads_nothing_and_changes_nothing(s3, buckets, warehouse_engine: Engine):
    lines = [
        orjson.dumps({"id": f"e{n}", "type": "page_view", "timestamp": "2025-08-01T10:00:00Z", "user_id": "u"})
        for n in range(4)
    ]
    body = b"\n".join([*lines, b"{broken"]) + b"\n"
    put = s3.put_object(Bucket=buckets["landing"], Key="landing/again.jsonl", Body=body)
    obj = LandingObject("landing/again.jsonl", put["ETag"].strip('"'), len(body))
    first = _ingest(s3, buckets, warehouse_engine, obj)
    s3.delete_object(Bucket=buckets["landing"], Key=obj.key)  # a re-run that read the object would fail now

    again = _ingest(s3, buckets, warehouse_engine, obj)

    assert (first.counts.records, first.counts.staged, first.counts.quarantined) == (5, 4, 1)
    assert (again.counts.records, again.counts.staged, again.counts.already_staged) == (5, 0, 4)
    assert (again.archive_key, again.sha256, again.newly_archived) == (first.archive_key, first.sha256, False)
    with warehouse_engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM staging_events")) == 4
        assert conn.scalar(text("SELECT count(*) FROM quarantine")) == 1


def test_a_file_whose_staging_was_cut_short_is_read_again_for_what_is_missing(s3, buckets, warehouse_engine: Engine):
    lines = [
        orjson.dumps({"id": f"e{n}", "type": "page_view", "timestamp": "2025-08-01T10:00:00Z", "user_id": "u"})
        for n in range(6)
    ]
    body = b"\n".join(lines) + b"\n"
    put = s3.put_object(Bucket=buckets["landing"], Key="landing/cut.jsonl", Body=body)
    obj = LandingObject("landing/cut.jsonl", put["ETag"].strip('"'), len(body))
    _ingest(s3, buckets, warehouse_engine, obj)
    with warehouse_engine.begin() as conn:  # as a run killed after its first chunks: some rows, no staged_at
        conn.execute(text("DELETE FROM staging_events WHERE record_no > 2"))
        conn.execute(text("UPDATE raw_batches SET staged_at = NULL, record_count = NULL"))

    again = _ingest(s3, buckets, warehouse_engine, obj)

    assert (again.counts.records, again.counts.staged, again.counts.already_staged) == (6, 4, 2)
    with warehouse_engine.connect() as conn:
        assert conn.scalar(text("SELECT count(DISTINCT record_no) FROM staging_events")) == 6
        assert conn.scalar(text("SELECT record_count FROM raw_batches")) == 6
