"""The counts staging reports are the database's own row counts (runs show them; reconciliation adds them up)."""

from __future__ import annotations

import orjson
from sqlalchemy import Engine

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
