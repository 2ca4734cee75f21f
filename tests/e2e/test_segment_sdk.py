"""An application instrumented with Segment's own Python SDK sends to the collector by changing the host,
and every event it sent ends in ``events`` exactly once: through the SDK's batching and flushes, a 503
while storage is down (the SDK retries), and a response lost after the batch was stored (the SDK sends
it again, staging holds it twice, the merge keeps one). A visitor who browses anonymously, logs in and buys
is one person in the daily tables, even when the login reaches the platform after the day merged.
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
import requests
from segment.analytics import Client
from sqlalchemy import func, select, text

from etl_assets.collector.app import CollectorConfig, create_app
from etl_assets.collector.writer import StagingWriter
from etl_assets.sources.s3 import s3_client
from etl_assets.transform.normalize import AcceptedTimes
from etl_assets.warehouse.engine import create_warehouse_engine
from etl_assets.warehouse.schema import events, quarantine, staging_events
from tests.asgi_server import serve
from tests.harness import pipeline

WRITE_KEY = "wk_sdk"


class FaultyStorage:
    """The real writer, with two faults on purpose: the 2nd flush finds storage down (nothing written), the 4th
    is written but its answer is lost (the SDK is told 503 after the rows committed)."""

    def __init__(self, writer: StagingWriter) -> None:
        self.writer = writer
        self.flushes = 0
        self.lock = threading.Lock()

    def write(self, batch: list) -> list[BaseException | None]:
        with self.lock:
            self.flushes += 1
            flush = self.flushes
        if flush == 2:
            return [ConnectionError("storage down")] * len(batch)
        outcome = self.writer.write(batch)
        if flush == 4:
            return [TimeoutError("answer lost after commit")] * len(batch)
        return outcome


def test_segment_sdk_events_land_in_events_exactly_once(pipeline_env: dict, definitions):
    engine = create_warehouse_engine(pipeline_env["DATABASE_URL"], pool_size=2, max_overflow=2)
    s3 = s3_client(
        pipeline_env["AWS_ENDPOINT_URL_S3"],
        "us-east-1",
        aws_access_key_id=pipeline_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=pipeline_env["AWS_SECRET_ACCESS_KEY"],
    )
    writer = StagingWriter(
        engine,
        s3,
        pipeline_env["ETL_ARCHIVE_BUCKET"],
        lambda: AcceptedTimes.through_today(date(2025, 1, 1), datetime.now(UTC)),
    )
    storage = FaultyStorage(writer)
    config = CollectorConfig(write_keys={WRITE_KEY: "segment"}, retry_after_seconds=0, linger_seconds=0.0)
    app = create_app(config, storage.write, lambda: None)
    errors: list[Exception] = []
    sent: dict[str, str] = {}
    with serve(app) as url:
        client = Client(
            WRITE_KEY,
            host=url,
            upload_size=20,
            upload_interval=0.05,
            max_retries=6,
            gzip=True,
            on_error=lambda error, batch: errors.append(error),
        )
        for n in range(120):
            user = f"user-{n % 7}"
            kind = n % 4
            if kind == 0:
                _, message = client.page(user, name="Home", properties={"url": f"https://shop.example/{n}"})
                sent[message["messageId"]] = "page_view"
            elif kind == 1:
                _, message = client.track(user, "Product Viewed", {"product_id": f"p{n % 5}", "price": 19.99})
                sent[message["messageId"]] = "product_view"
            elif kind == 2:
                _, message = client.track(
                    user, "Product Added", {"product_id": f"p{n % 5}", "price": 19.99, "quantity": 2}
                )
                sent[message["messageId"]] = "add_to_cart"
            else:
                _, message = client.track(
                    user,
                    "Order Completed",
                    {"order_id": f"o{n}", "product_id": f"p{n % 5}", "price": 39.98, "currency": "USD"},
                )
                sent[message["messageId"]] = "purchase"
            if n % 40 == 39:
                client.flush()
        _, identify = client.identify("user-1", {"email": "one@example.com"})
        client.flush()
        client.shutdown()
        metrics = requests.get(f"{url}/metrics", timeout=10).text
    assert errors == []
    assert storage.flushes >= 5
    assert 'etl_collector_requests_total{endpoint="segment",status="503"} 2.0' in metrics

    with engine.connect() as conn:
        staged = conn.execute(select(staging_events.c.event_id, func.count()).group_by(staging_events.c.event_id)).all()
    assert {event_id for event_id, _ in staged} == {*sent, identify["messageId"]}
    assert any(copies == 2 for _, copies in staged), "the batch whose answer was lost should be staged twice"

    with pipeline(definitions) as run:
        run.tick_and_run("staged_days_sensor")
    with engine.connect() as conn:
        loaded = conn.execute(select(events.c.event_id, events.c.event_type, events.c.user_id)).all()
        held = conn.execute(select(quarantine.c.event_id, quarantine.c.reason)).all()
        pending = conn.scalar(text("SELECT count(*) FROM staging_status WHERE status = 'pending'"))
    engine.dispose()
    assert len(loaded) == len(sent) + 1 == 121
    assert {event_id: kind for event_id, kind, _ in loaded} == {**sent, identify["messageId"]: "identify"}
    assert all(user is not None and user.startswith("user-") for _, _, user in loaded)
    assert held == []
    assert pending == 0


@pytest.fixture(autouse=True)
def _quiet_sdk_logging():
    import logging

    logging.getLogger("segment").setLevel(logging.CRITICAL)
    yield


def _settle(run) -> list[str]:
    """Tick staged_days_sensor and run what it asks until it asks nothing; the first day of each run."""
    asked = []
    while requests_ := [r for r in run.tick("staged_days_sensor") if r.run_key not in run.run_keys]:
        asked += [r.tags["dagster/asset_partition_range_start"] for r in requests_]
        run.execute("staged_days_sensor", requests_)
    return asked


def test_a_visit_sent_through_the_sdk_is_one_person_and_a_late_login_re_attributes_its_day(
    pipeline_env: dict, definitions
):
    engine = create_warehouse_engine(pipeline_env["DATABASE_URL"], pool_size=2, max_overflow=2)
    s3 = s3_client(
        pipeline_env["AWS_ENDPOINT_URL_S3"],
        "us-east-1",
        aws_access_key_id=pipeline_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=pipeline_env["AWS_SECRET_ACCESS_KEY"],
    )
    writer = StagingWriter(
        engine,
        s3,
        pipeline_env["ETL_ARCHIVE_BUCKET"],
        lambda: AcceptedTimes.through_today(date(2025, 1, 1), datetime.now(UTC)),
    )
    app = create_app(
        CollectorConfig(write_keys={WRITE_KEY: "segment"}, retry_after_seconds=0, linger_seconds=0.0),
        writer.write,
        lambda: None,
    )
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    yesterday = today - timedelta(days=1)
    product = {"product_id": "p1", "price": 19.99, "currency": "USD"}

    def funnel(day: date) -> tuple | None:
        with engine.connect() as conn:
            query = text("SELECT viewers, carters, purchasers FROM daily_funnel WHERE day = :day")
            return conn.execute(query, {"day": day}).one_or_none()

    def converting_sessions(day: date) -> list[tuple]:
        with engine.connect() as conn:
            query = text("SELECT user_id, events FROM sessions WHERE day = :day AND converted")
            return conn.execute(query, {"day": day}).all()

    with serve(app) as url, pipeline(definitions) as run:
        client = Client(WRITE_KEY, host=url, max_retries=6, sync_mode=True)  # each call is its own request
        # Today: anonymous browsing, a login mid-visit, then a cart and an order as the known user.
        client.page(anonymous_id="anon-today", name="Home", timestamp=today)
        client.track(anonymous_id="anon-today", event="Product Viewed", properties=product, timestamp=today)
        client.identify("ann", {"email": "ann@example.com"}, anonymous_id="anon-today", timestamp=today)
        client.track("ann", "Product Added", product, anonymous_id="anon-today", timestamp=today)
        client.track("ann", "Order Completed", {**product, "order_id": "o1"}, timestamp=today)
        # Yesterday: an anonymous visitor viewed and carted; the order came from a known user, not yet linked.
        client.track(anonymous_id="anon-old", event="Product Viewed", properties=product, timestamp=yesterday)
        client.track(anonymous_id="anon-old", event="Product Added", properties=product, timestamp=yesterday)
        client.track("bob", "Order Completed", {**product, "order_id": "o2"}, timestamp=yesterday)
        _settle(run)
        assert funnel(today.date()) == (1, 1, 1)
        assert converting_sessions(today.date()) == [("ann", 4)]
        assert funnel(yesterday.date()) == (1, 1, 0)

        # Bob's login reaches the platform after yesterday merged: the sensor rebuilds yesterday's persons.
        late_login = {"timestamp": today, "message_id": "late-login-bob", "anonymous_id": "anon-old"}
        client.identify("bob", {"plan": "pro"}, **late_login)
        assert _settle(run) == [today.date().isoformat(), yesterday.date().isoformat()]
        assert funnel(yesterday.date()) == (1, 1, 1)
        assert converting_sessions(yesterday.date()) == [("bob", 3)]

        client.identify("bob", {"plan": "pro"}, **late_login)
        assert _settle(run) == [today.date().isoformat()]
        assert funnel(yesterday.date()) == (1, 1, 1)
        assert converting_sessions(yesterday.date()) == [("bob", 3)]
    with engine.connect() as conn:
        identifies = conn.scalar(text("SELECT count(*) FROM events WHERE event_type = 'identify'"))
        quarantined = conn.scalar(text("SELECT count(*) FROM quarantine"))
    engine.dispose()
    assert (identifies, quarantined) == (2, 0)
