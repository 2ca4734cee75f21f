"""Replays of live-source batches read the raw archive back: API pages and collector requests re-stage
exactly the records they staged the first time, back to pending, and an archive that no longer matches
its checksum is refused."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Engine, text

from etl_assets.collector.writer import StagingWriter
from etl_assets.demo.events_api_server import FeedSettings, create_app
from etl_assets.sources.events_api import ApiSource, EventsApiClient, poll_source
from etl_assets.sources.replay import CannotReplay, archived_batches, replay_batch
from etl_assets.transform.inbound import InboundRequest, ParsedRequest
from etl_assets.transform.normalize import AcceptedTimes
from tests.asgi_server import serve

ACCEPTED = AcceptedTimes.through_today(date(2025, 1, 1), datetime.now(UTC))


def staged(engine: Engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT s.batch_id, s.record_no, s.event_id, s.payload, v.status FROM staging_events s "
                "JOIN staging_status v ON v.id = s.id ORDER BY s.batch_id, s.record_no"
            )
        ).all()


def mark_merged(engine: Engine) -> None:
    """As if every day had merged: each batch's days read through their last row."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE batch_days b SET merged_rows = staged_rows, merged_through = "
                "(SELECT max(id) FROM staging_events s WHERE s.batch_id = b.batch_id AND s.event_day = b.day)"
            )
        )


def test_collector_and_api_batches_replay_from_the_archive(
    warehouse_engine: Engine, s3, buckets: dict[str, str], monkeypatch: pytest.MonkeyPatch
):
    writer = StagingWriter(warehouse_engine, s3, buckets["archive"], lambda: ACCEPTED)
    received = datetime.now(UTC)
    segment = json.dumps({"batch": [{"type": "track", "messageId": "m1", "event": "Product Viewed", "userId": "u"}]})
    hook = json.dumps([{"id": "w1", "type": "page_view", "timestamp": "2025-08-01T10:00:00Z"}, "not an event"])
    assert writer.write(
        [
            ParsedRequest.parse(InboundRequest("segment", "batch", received, segment)),
            ParsedRequest.parse(InboundRequest("webhook:acme", "acme", received, hook)),
        ]
    ) == [None, None]
    monkeypatch.setenv("REPLAY_TOKEN", "t")
    feed = FeedSettings(token="t", backlog=100, events_per_second=0.0001, error_share=0.0, rate_limit_share=0.0)
    with serve(create_app(feed)) as url:
        api = ApiSource("demo", f"{url}/events", token_env="REPLAY_TOKEN", page_size=40)
        poll_source(EventsApiClient(api), warehouse_engine, s3, buckets["archive"], ACCEPTED)
    before = staged(warehouse_engine)
    mark_merged(warehouse_engine)
    assert {row.status for row in staged(warehouse_engine)} <= {"succeeded", "failed"}

    batches = archived_batches(warehouse_engine, received.date(), datetime.now(UTC).date())  # midnight may pass
    assert sorted({batch["source"] for batch in batches}) == ["api:demo", "segment", "webhook:acme"]
    total = 0
    for batch in batches:
        counts = replay_batch(s3, warehouse_engine, batch, buckets["archive"], ACCEPTED, {api.source: api})
        total += counts.records
    after = staged(warehouse_engine)
    assert total == 1 + 2 + 100
    assert [row[:4] for row in after] == [row[:4] for row in before]
    assert [row.status for row in after] == [row.status for row in before]  # waiting again, as when first staged
    assert {row.status for row in after} == {"pending", "failed"}


def test_an_archive_that_does_not_match_its_checksum_is_not_replayed(
    warehouse_engine: Engine, s3, buckets: dict[str, str]
):
    writer = StagingWriter(warehouse_engine, s3, buckets["archive"], lambda: ACCEPTED)
    body = json.dumps({"id": "w1", "type": "page_view", "timestamp": "2025-08-01T10:00:00Z"})
    received = datetime.now(UTC)
    writer.write([ParsedRequest.parse(InboundRequest("webhook:acme", "acme", received, body))])
    [batch] = archived_batches(warehouse_engine, received.date(), datetime.now(UTC).date())
    s3.put_object(Bucket=buckets["archive"], Key=batch["archive_key"], Body=b"tampered")
    with pytest.raises(CannotReplay, match="SHA-256"):
        replay_batch(s3, warehouse_engine, batch, buckets["archive"], ACCEPTED, {})
