"""The collector over real HTTP on loopback, writing into a real PostgreSQL and a real S3 endpoint.

Good webhooks and Segment calls are staged and archived before the 200; every bad kind of request gets
its status and reason and leaves nothing behind; a database that goes away turns answers into 503 with
Retry-After, and nothing a client was told is stored goes missing.
"""

from __future__ import annotations

import base64
import gzip
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pytest
import requests
from sqlalchemy import Engine, Text, func, select, text

from etl_assets.collector.app import CollectorConfig, create_app
from etl_assets.collector.metrics import CollectorMetrics
from etl_assets.collector.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from etl_assets.collector.writer import StagingWriter
from etl_assets.localstack.postgres import EmbeddedPostgres
from etl_assets.localstack.processes import free_port
from etl_assets.transform.inbound import InboundRequest
from etl_assets.transform.normalize import AcceptedTimes
from etl_assets.warehouse import migrate
from etl_assets.warehouse.engine import create_warehouse_engine
from etl_assets.warehouse.schema import quarantine, raw_batches, staging_events
from tests.asgi_server import serve
from tests.pg_commit_cutter import commit_cutter

WRITE_KEY = "wk_test"
APP_WRITE_KEY = "wk_app"
SECRET = "whsec_acme"
CONFIG = CollectorConfig(
    write_keys={WRITE_KEY: "segment", APP_WRITE_KEY: "segment:app"},
    webhook_secrets={"acme": ("old-secret", SECRET)},
    max_webhook_bytes=4096,
    retry_after_seconds=7,
)


def accepted() -> AcceptedTimes:
    return AcceptedTimes.through_today(date(2025, 1, 1), datetime.now(UTC))


@dataclass
class Collector:
    url: str
    engine: Engine
    s3: object
    archive_bucket: str
    metrics: CollectorMetrics

    def webhook(self, body: bytes, *, partner: str = "acme", secret: str = SECRET, at: int | None = None, **headers):
        timestamp = int(time.time()) if at is None else at
        signed = {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}
        return requests.post(f"{self.url}/webhooks/{partner}", data=body, headers={**signed, **headers}, timeout=10)

    def segment(self, call: str, body: dict | bytes, *, key: str | None = WRITE_KEY, **headers):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()} if key else {}
        return requests.post(
            f"{self.url}/v1/{call}",
            data=data,
            headers={"Content-Type": "application/json", **auth, **headers},
            timeout=10,
        )

    def stored(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            counts = {
                table.name: conn.scalar(select(func.count()).select_from(table))
                for table in (raw_batches, staging_events, quarantine)
            }
        listing = self.s3.list_objects_v2(Bucket=self.archive_bucket)
        counts["archive"] = listing.get("KeyCount", 0)
        return counts


def start_collector(engine: Engine, s3, archive_bucket: str) -> tuple[object, CollectorMetrics]:
    metrics = CollectorMetrics()

    def ping() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    writer = StagingWriter(
        engine,
        s3,
        archive_bucket,
        accepted,
        on_group=lambda result: metrics.rows_staged.inc(result.counts.staged) if result.counts else None,
    )
    return create_app(CONFIG, writer.write, ping, metrics), metrics


@pytest.fixture
def collector(warehouse_engine: Engine, s3, buckets: dict[str, str]) -> Iterator[Collector]:
    app, metrics = start_collector(warehouse_engine, s3, buckets["archive"])
    with serve(app) as url:
        yield Collector(url, warehouse_engine, s3, buckets["archive"], metrics)


def purchase(event_id: str, **extra) -> dict:
    return {
        "id": event_id,
        "type": "purchase",
        "timestamp": "2025-08-01T12:00:00Z",
        "user": {"id": "u123"},
        "product": {"id": "p1", "price": "10.00", "currency": "EUR"},
        **extra,
    }


def archived_requests(collector: Collector, batch_id: str) -> list[InboundRequest]:
    with collector.engine.connect() as conn:
        key = conn.scalar(select(raw_batches.c.archive_key).where(raw_batches.c.batch_id == batch_id))
    body = collector.s3.get_object(Bucket=collector.archive_bucket, Key=key)["Body"].read()
    return [InboundRequest.from_json_line(line) for line in gzip.decompress(body).splitlines()]


def test_a_signed_webhook_is_staged_and_its_body_archived_byte_for_byte(collector: Collector):
    body = json.dumps({"events": [purchase("w1"), purchase("w2")]}, separators=(",", ":")).encode()
    response = collector.webhook(body)
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 2}
    with collector.engine.connect() as conn:
        rows = conn.execute(
            select(staging_events.c.event_id, staging_events.c.source, staging_events.c.batch_id).order_by(
                staging_events.c.record_no
            )
        ).all()
    assert [(row.event_id, row.source) for row in rows] == [("w1", "webhook:acme"), ("w2", "webhook:acme")]
    [request] = archived_requests(collector, rows[0].batch_id)
    assert request.body.encode() == body
    assert request.source == "webhook:acme"


def test_a_webhook_signed_with_the_previous_secret_is_accepted_during_rotation(collector: Collector):
    assert collector.webhook(json.dumps(purchase("w3")).encode(), secret="old-secret").status_code == 200


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("bad signature", 401, "bad_signature"),
        ("stale timestamp", 401, "stale_timestamp"),
        ("timestamp from the future", 401, "stale_timestamp"),
        ("no signature", 401, "missing_signature"),
        ("unknown partner", 401, "unknown_partner"),
        ("body over the limit", 413, "too_large"),
        ("malformed JSON", 400, "invalid_body"),
        ("events not a list", 400, "invalid_body"),
    ],
)
def test_each_bad_webhook_is_refused_with_its_status_and_nothing_is_stored(
    collector: Collector, case: str, status: int, reason: str
):
    good = json.dumps(purchase("w9")).encode()
    now = int(time.time())
    if case == "bad signature":
        response = collector.webhook(good, secret="not-the-secret")
    elif case == "stale timestamp":
        response = collector.webhook(good, at=now - 301)
    elif case == "timestamp from the future":
        response = collector.webhook(good, at=now + 400)
    elif case == "no signature":
        response = requests.post(f"{collector.url}/webhooks/acme", data=good, timeout=10)
    elif case == "unknown partner":
        response = collector.webhook(good, partner="mallory")
    elif case == "body over the limit":
        response = collector.webhook(json.dumps([purchase(f"w{n}") for n in range(40)]).encode())
    elif case == "malformed JSON":
        response = collector.webhook(b'{"id": "w9", "type": ')
    else:
        response = collector.webhook(b'{"events": {"id": "w9"}}')
    assert response.status_code == status, response.text
    assert response.json()["error"] == reason
    if case == "malformed JSON":
        assert "malformed JSON" in response.json()["message"]
    assert collector.stored() == {"raw_batches": 0, "staging_events": 0, "quarantine": 0, "archive": 0}
    metrics = requests.get(f"{collector.url}/metrics", timeout=10).text
    assert f'etl_collector_rejected_requests_total{{reason="{reason}"}} 1.0' in metrics


def test_a_replayed_webhook_with_a_tampered_body_is_refused(collector: Collector):
    timestamp = int(time.time())
    signature = sign(SECRET, timestamp, json.dumps(purchase("w1")).encode())
    response = requests.post(
        f"{collector.url}/webhooks/acme",
        data=json.dumps(purchase("w1", user={"id": "attacker"})).encode(),
        headers={TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signature},
        timeout=10,
    )
    assert response.status_code == 401
    assert collector.stored()["staging_events"] == 0


def test_segment_calls_are_staged_with_message_id_as_event_id(collector: Collector):
    context = {"page": {"url": "https://shop.example/p/1"}}
    calls = [
        ("track", {"messageId": "m1", "event": "Product Viewed", "userId": "u1", "properties": {"product_id": "p1"}}),
        ("page", {"messageId": "m2", "anonymousId": "a1", "name": "Home", "context": context}),
        ("identify", {"messageId": "m3", "userId": "u1", "traits": {"email": "u1@example.com"}}),
        (
            "batch",
            {
                "batch": [
                    {"type": "track", "messageId": "m4", "event": "Product Added", "userId": "u1"},
                    {"type": "track", "messageId": "m5", "event": "Order Completed", "userId": "u1"},
                ],
                "context": {"library": {"name": "analytics-python"}},
                "writeKey": WRITE_KEY,
            },
        ),
    ]
    for call, body in calls:
        response = collector.segment(call, body)
        assert response.status_code == 200, response.text
        assert response.json() == {"success": True}
    with collector.engine.connect() as conn:
        rows = conn.execute(select(staging_events.c.event_id, staging_events.c.payload).order_by("id")).all()
    assert [row.event_id for row in rows] == ["m1", "m2", "m3", "m4", "m5"]
    payloads = {row.event_id: row.payload for row in rows}
    assert payloads["m2"]["type"] == "page"
    assert payloads["m4"]["context"] == {"library": {"name": "analytics-python"}}
    assert "writeKey" not in payloads["m4"]
    assert all("receivedAt" in payload and "timestamp" in payload for payload in payloads.values())


def test_segment_accepts_gzip_bodies_and_the_write_key_in_the_body(collector: Collector):
    body = json.dumps({"batch": [{"type": "track", "messageId": "g1", "event": "Product Viewed", "userId": "u"}]})
    response = collector.segment("batch", gzip.compress(body.encode()), **{"Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    in_body = {"batch": [{"type": "page", "messageId": "g2", "userId": "u"}], "writeKey": WRITE_KEY}
    assert collector.segment("batch", in_body, key=None).status_code == 200
    assert collector.stored()["staging_events"] == 2


def test_each_write_key_stages_its_events_as_its_own_source_and_counts_them_apart(collector: Collector):
    track = {"type": "track", "event": "Product Viewed", "userId": "u"}
    for number, key in enumerate((WRITE_KEY, APP_WRITE_KEY, APP_WRITE_KEY)):
        response = collector.segment("batch", {"batch": [{**track, "messageId": f"k{number}"}]}, key=key)
        assert response.status_code == 200, response.text
    in_body = {"batch": [{**track, "messageId": "k3"}], "writeKey": APP_WRITE_KEY}
    assert collector.segment("batch", in_body, key=None).status_code == 200
    with collector.engine.connect() as conn:
        staged = dict(conn.execute(select(staging_events.c.event_id, staging_events.c.source)).all())
        batches = set(conn.scalars(select(raw_batches.c.source)))
    assert staged == {"k0": "segment", "k1": "segment:app", "k2": "segment:app", "k3": "segment:app"}
    assert batches == {"segment", "segment:app"}
    metrics = requests.get(f"{collector.url}/metrics", timeout=10).text
    assert 'etl_collector_accepted_events_total{source="segment"} 1.0' in metrics
    assert 'etl_collector_accepted_events_total{source="segment:app"} 3.0' in metrics


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("wrong write key", 401, "bad_write_key"),
        ("no write key", 401, "bad_write_key"),
        ("batch over 500 KB", 413, "too_large"),
        ("message over 32 KB", 413, "too_large"),
        ("batch not a list", 400, "invalid_body"),
        ("unknown call type", 400, "invalid_body"),
        ("malformed JSON", 400, "invalid_body"),
        ("unknown endpoint", 404, "unknown_endpoint"),
    ],
)
def test_each_bad_segment_call_is_refused_and_nothing_is_stored(
    collector: Collector, case: str, status: int, reason: str
):
    track = {"type": "track", "messageId": "x", "event": "Product Viewed", "userId": "u"}
    if case == "wrong write key":
        response = collector.segment("track", track, key="guess")
    elif case == "no write key":
        response = collector.segment("track", track, key=None)
    elif case == "batch over 500 KB":
        big = [{**track, "messageId": f"x{n}", "properties": {"blob": "x" * 20_000}} for n in range(30)]
        response = collector.segment("batch", {"batch": big})
    elif case == "message over 32 KB":
        response = collector.segment("batch", {"batch": [{**track, "properties": {"blob": "x" * 40_000}}]})
    elif case == "batch not a list":
        response = collector.segment("batch", {"batch": track})
    elif case == "unknown call type":
        response = collector.segment("batch", {"batch": [{**track, "type": "teleport"}]})
    elif case == "malformed JSON":
        response = collector.segment("track", b'{"event": "Product Viewed",')
    else:
        response = collector.segment("v2", track)
    assert response.status_code == status, response.text
    assert response.json()["error"] == reason
    assert collector.stored() == {"raw_batches": 0, "staging_events": 0, "quarantine": 0, "archive": 0}


def test_an_event_that_cannot_be_staged_is_quarantined_with_its_reason_and_the_rest_kept(collector: Collector):
    body = json.dumps([purchase("w1"), "not an object", purchase("w2", note="nul \u0000 inside")]).encode()
    response = collector.webhook(body)
    assert response.status_code == 200
    with collector.engine.connect() as conn:
        staged = conn.scalars(select(staging_events.c.event_id)).all()
        reasons = conn.execute(select(quarantine.c.record_no, quarantine.c.reason).order_by("record_no")).all()
    assert staged == ["w1"]
    assert [row.record_no for row in reasons] == [2, 3]
    assert "JSON object" in reasons[0].reason and "NUL" in reasons[1].reason


def test_concurrent_requests_are_written_together_in_few_flushes(collector: Collector):
    from concurrent.futures import ThreadPoolExecutor

    bodies = [json.dumps(purchase(f"c{n}")).encode() for n in range(60)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(lambda body: collector.webhook(body).status_code, bodies))
    assert statuses == [200] * 60
    stored = collector.stored()
    assert stored["staging_events"] == 60
    assert stored["raw_batches"] == stored["archive"] < 60
    metrics = requests.get(f"{collector.url}/metrics", timeout=10).text
    assert 'etl_collector_accepted_events_total{source="webhook:acme"} 60.0' in metrics
    assert "etl_collector_rows_staged_total 60.0" in metrics


@pytest.fixture
def own_postgres(tmp_path) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own, so the test can stop it and start it again."""
    server = EmbeddedPostgres(tmp_path / "pg", free_port())
    server.start()
    yield server
    server.stop()


def test_while_the_database_is_down_requests_get_503_with_retry_after_and_nothing_is_lost(
    own_postgres: EmbeddedPostgres, s3, buckets: dict[str, str]
):
    engine = create_warehouse_engine(own_postgres.url(), pool_size=2, max_overflow=0, connect_timeout=3)
    migrate.upgrade(engine)
    app, _ = start_collector(engine, s3, buckets["archive"])
    with serve(app) as url:
        collector = Collector(url, engine, s3, buckets["archive"], CollectorMetrics())
        assert collector.webhook(json.dumps(purchase("before")).encode()).status_code == 200
        assert requests.get(f"{url}/healthz", timeout=10).status_code == 200

        own_postgres.stop()
        down = collector.webhook(json.dumps(purchase("during")).encode())
        assert down.status_code == 503
        assert 7 <= int(down.headers["Retry-After"]) <= 14
        assert down.json()["error"] == "storage_unavailable"
        health = requests.get(f"{url}/healthz", timeout=10)
        assert health.status_code == 503

        own_postgres.start()
        assert collector.webhook(json.dumps(purchase("after")).encode()).status_code == 200
        assert requests.get(f"{url}/healthz", timeout=10).status_code == 200
        with engine.connect() as conn:
            staged = conn.scalars(select(staging_events.c.event_id).order_by("id")).all()
            ledger = conn.scalar(select(func.count()).select_from(raw_batches))
    engine.dispose()
    assert staged == ["before", "after"]
    assert ledger == 2
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=buckets["archive"]).get("Contents", [])]
    assert len(keys) == 2, "the refused request's body must not stay in the archive"


def test_a_flush_whose_commit_landed_but_whose_answer_was_lost_is_answered_200_and_keeps_its_archive(
    postgres_server: EmbeddedPostgres, warehouse_url: str, warehouse_engine: Engine, s3, buckets: dict[str, str]
):
    """The connection drops after the server committed the batch: the client got an error, the ledger has the
    batch. Its requests are durable, so they are answered 200, and its archived body (which the ledger names)
    must stay."""
    with commit_cutter(postgres_server.port) as cutter:
        engine = create_warehouse_engine(cutter.url_for(warehouse_url), pool_size=2, max_overflow=0, connect_timeout=3)
        app, _ = start_collector(engine, s3, buckets["archive"])
        with serve(app) as url:
            collector = Collector(url, warehouse_engine, s3, buckets["archive"], CollectorMetrics())
            cutter.cutting = True
            response = collector.webhook(json.dumps(purchase("lost-answer")).encode())
            cutter.cutting = False
            assert cutter.commits_cut >= 1
            assert response.status_code == 200, response.text
            assert collector.webhook(json.dumps(purchase("answered")).encode()).status_code == 200
        engine.dispose()

    with warehouse_engine.connect() as conn:
        staged = conn.scalars(select(staging_events.c.event_id).order_by("id")).all()
        archive_keys = conn.scalars(select(raw_batches.c.archive_key).order_by("batch_id")).all()
    assert staged == ["lost-answer", "answered"]
    listing = s3.list_objects_v2(Bucket=buckets["archive"]).get("Contents", [])
    assert sorted(item["Key"] for item in listing) == sorted(archive_keys)
    [request] = archived_requests(collector, batch_of(warehouse_engine, "lost-answer"))
    assert json.loads(request.body)["id"] == "lost-answer"


def batch_of(engine: Engine, event_id: str) -> str:
    with engine.connect() as conn:
        return conn.scalar(select(staging_events.c.batch_id).where(staging_events.c.event_id == event_id))


def test_numbers_a_double_cannot_hold_are_staged_digit_for_digit(collector: Collector):
    body = json.dumps(purchase("big-number")).replace(
        '"u123"}', '"u123"}, "order_micros": 123456789012345678901234567890'
    )
    assert collector.webhook(body.encode()).status_code == 200
    with collector.engine.connect() as conn:
        payload = conn.scalar(select(staging_events.c.payload.cast(Text)))
    assert json.loads(payload)["order_micros"] == 123456789012345678901234567890
