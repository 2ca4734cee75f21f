"""The raw archive is the audit copy: bytes exactly as received (PII in clear included), encrypted at rest.

Every way into the archive (a landing file copied server-side, an API page, a collector batch) asks the store
for server-side encryption, and the object reads back byte for byte.
"""

import gzip
import json
from datetime import UTC, date, datetime

from sqlalchemy import select

from etl_assets.collector.writer import StagingWriter
from etl_assets.sources.archive import archive_body, body_key
from etl_assets.sources.landing import LandingObject
from etl_assets.sources.landing_ingest import ingest_landing_object
from etl_assets.transform.inbound import InboundRequest, ParsedRequest
from etl_assets.warehouse.schema import raw_batches
from tests.harness import ACCEPTED

RECORD = {
    "id": "e1",
    "type": "page_view",
    "timestamp": "2025-08-01T12:00:00Z",
    "email": "ann@example.com",
    "context": {"ip": "203.0.113.7"},
}


def assert_encrypted_and_unchanged(s3, bucket: str, key: str, body: bytes) -> None:
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ServerSideEncryption"] == "AES256"
    stored = s3.get_object(Bucket=bucket, Key=key)
    assert stored["ServerSideEncryption"] == "AES256"
    assert stored["Body"].read() == body


def test_a_landing_file_is_archived_encrypted_and_unchanged(s3, buckets, warehouse_engine):
    body = json.dumps(RECORD).encode() + b"\n"
    put = s3.put_object(Bucket=buckets["landing"], Key="landing/pii.jsonl", Body=body)
    obj = LandingObject("landing/pii.jsonl", put["ETag"].strip('"'), len(body))
    result = ingest_landing_object(
        s3,
        warehouse_engine,
        obj,
        landing_bucket=buckets["landing"],
        archive_bucket=buckets["archive"],
        accepted=ACCEPTED,
    )
    assert_encrypted_and_unchanged(s3, buckets["archive"], result.archive_key, body)
    assert b"ann@example.com" in body  # the audit copy keeps PII as received


def test_an_api_page_is_archived_encrypted_and_unchanged(s3, buckets):
    body = json.dumps({"data": [RECORD], "next": None}).encode()
    key = body_key("api:demo", date(2025, 8, 1), "page-1.json")
    archived = archive_body(s3, buckets["archive"], key, body, "application/json")
    assert archived.byte_count == len(body)
    assert_encrypted_and_unchanged(s3, buckets["archive"], key, body)


def test_a_collector_batch_is_archived_encrypted_and_unchanged(s3, buckets, warehouse_engine):
    request = InboundRequest("webhook:acme", "acme", datetime.now(UTC), json.dumps({"events": [RECORD]}))
    writer = StagingWriter(warehouse_engine, s3, buckets["archive"], lambda: ACCEPTED)
    assert writer.write([ParsedRequest.parse(request)]) == [None]
    with warehouse_engine.connect() as conn:
        key = conn.scalar(select(raw_batches.c.archive_key).where(raw_batches.c.source == "webhook:acme"))
    head = s3.head_object(Bucket=buckets["archive"], Key=key)
    assert head["ServerSideEncryption"] == "AES256"
    stored = s3.get_object(Bucket=buckets["archive"], Key=key)["Body"].read()
    assert gzip.decompress(stored) == request.to_json_line() + b"\n"
