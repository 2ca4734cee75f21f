"""The S3 endpoint in trouble: 503 SlowDown, a copy that fails after its 200, answers that never come.

A fault proxy on loopback (``tests.fault_proxy``) stands in front of the real local S3 endpoint and answers the
first calls of each kind with a fault, as S3 does under load; everything else reaches the endpoint unchanged.
The platform's own S3 client (botocore's standard retries) must get the listing, the download, the archive copy
and the collector's archive write through it, and the rows must come out right.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
import requests
from sqlalchemy import Engine, text

from etl_assets.collector.service import build_app
from etl_assets.localstack.processes import free_port
from etl_assets.settings import Settings
from etl_assets.sources.landing import list_objects_after
from etl_assets.sources.landing_ingest import ingest_landing_object
from etl_assets.sources.s3 import s3_client
from etl_assets.transform.normalize import AcceptedTimes
from tests.asgi_server import serve
from tests.conftest import S3_CREDENTIALS
from tests.fault_proxy import Answer, FaultsInTurn, ProxiedRequest, Stall, all_of, create_proxy

SLOW_DOWN = Answer(
    503,
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>4442587FB7D0A2F9</RequestId></Error>",
    {"Content-Type": "application/xml"},
)
COPY_FAILED_AFTER_200 = Answer(
    200,
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>",
    {"Content-Type": "application/xml"},
)
"""S3 answers a CopyObject 200 at once and may report a failure of the copy later in the body."""


def is_listing(request: ProxiedRequest) -> bool:
    return request.method == "GET" and request.has_query("list-type")


def is_download(request: ProxiedRequest) -> bool:
    return request.method == "GET" and request.path.count("/") >= 2 and not request.has_query("list-type")


def is_copy(request: ProxiedRequest) -> bool:
    return request.method == "PUT" and "x-amz-copy-source" in request.headers


def is_upload(request: ProxiedRequest) -> bool:
    return request.method == "PUT" and "x-amz-copy-source" not in request.headers and request.path.count("/") >= 2


def landing_file(s3, bucket: str) -> tuple[str, set[str]]:
    """A small JSONL file in the landing bucket (put straight into the endpoint); its key and event ids."""
    ids = [f"s3f{n}" for n in range(40)]
    body = "".join(
        json.dumps({"id": i, "type": "page_view", "timestamp": "2025-08-01T10:00:00Z", "user": {"id": "u1"}}) + "\n"
        for i in ids
    )
    key = "landing/2025-08-01/faults.jsonl"
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode())
    return key, set(ids)


def staged_ids(engine: Engine) -> Counter[str]:
    with engine.connect() as conn:
        return Counter(conn.scalars(text("SELECT event_id FROM staging_events")))


def served_statuses(proxy, matches) -> list[int | None]:
    return [served.status for served in proxy.state.served if matches(served.request)]


def ingest_the_landing_file(client, engine: Engine, buckets: dict[str, str], key: str):
    """What the S3 sensor and an ingest run do with a new file: list it, download it, archive it, stage it."""
    [obj], more = list_objects_after(client, buckets["landing"], "landing/", None, 100)
    assert (obj.key, more) == (key, False)
    return ingest_landing_object(
        client,
        engine,
        obj,
        landing_bucket=buckets["landing"],
        archive_bucket=buckets["archive"],
        accepted=AcceptedTimes.through_today(date(2025, 1, 1), datetime.now(UTC)),
    )


def test_listing_download_and_archive_copy_get_through_slowdown_with_the_platforms_client(
    s3, buckets: dict[str, str], s3_endpoint: str, warehouse_engine
):
    key, ids = landing_file(s3, buckets["landing"])
    plans = [
        FaultsInTurn(is_listing, [SLOW_DOWN]),
        FaultsInTurn(is_download, [SLOW_DOWN, SLOW_DOWN]),
        FaultsInTurn(is_copy, [SLOW_DOWN, COPY_FAILED_AFTER_200]),
    ]
    proxy = create_proxy(s3_endpoint, all_of(*plans))
    with serve(proxy) as proxy_url:
        client = s3_client(proxy_url, "us-east-1", **S3_CREDENTIALS)  # as ObjectStoreResource.client() makes it
        ingested = ingest_the_landing_file(client, warehouse_engine, buckets, key)
    assert [plan.left for plan in plans] == [0, 0, 0], "every fault was served"
    assert served_statuses(proxy, is_listing) == [503, 200]
    assert served_statuses(proxy, is_download) == [503, 503, 200]
    assert served_statuses(proxy, is_copy) == [503, 200, 200]  # the first 200 carried the InternalError
    assert (ingested.counts.records, ingested.counts.staged) == (40, 40)
    assert staged_ids(warehouse_engine) == Counter(ids)
    with warehouse_engine.connect() as conn:
        archive_key, sha256 = conn.execute(text("SELECT archive_key, sha256 FROM raw_batches")).one()
    assert s3.head_object(Bucket=buckets["archive"], Key=archive_key)["Metadata"]["sha256"] == sha256
    assert s3.list_objects_v2(Bucket=buckets["archive"])["KeyCount"] == 1


def test_s3_answers_that_never_come_time_out_and_are_retried(
    s3, buckets: dict[str, str], s3_endpoint: str, warehouse_engine
):
    """The platform's client with a one-second read timeout (its own is a minute): each stalled call is given up
    and sent again, and the file lands whole."""
    key, ids = landing_file(s3, buckets["landing"])
    stall = Stall(3.0)
    plans = [FaultsInTurn(is_listing, [stall]), FaultsInTurn(is_download, [stall]), FaultsInTurn(is_copy, [stall])]
    proxy = create_proxy(s3_endpoint, all_of(*plans))
    with serve(proxy) as proxy_url:
        client = s3_client(proxy_url, "us-east-1", read_timeout=1.0, **S3_CREDENTIALS)
        ingested = ingest_the_landing_file(client, warehouse_engine, buckets, key)
    assert [plan.left for plan in plans] == [0, 0, 0]
    for matches in (is_listing, is_download, is_copy):
        assert served_statuses(proxy, matches) == [None, 200]
    assert (ingested.counts.records, ingested.counts.staged) == (40, 40)
    assert staged_ids(warehouse_engine) == Counter(ids)
    assert s3.head_object(Bucket=buckets["archive"], Key=ingested.archive_key)["Metadata"]["sha256"] == ingested.sha256


@pytest.fixture
def collector_behind_proxy(
    pipeline_env: dict, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, FaultsInTurn]]:
    """The collector as ``etl collector`` builds it, with its S3 endpoint behind a fault proxy that answers
    the archive writes SlowDown while ``plan`` has faults left."""
    plan = FaultsInTurn(is_upload, [SLOW_DOWN] * 6)
    proxy = create_proxy(s3_endpoint, plan)
    with serve(proxy) as proxy_url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy_url)
        monkeypatch.setenv("ETL_SEGMENT_WRITE_KEYS", "wk_faults")
        monkeypatch.setenv("ETL_COLLECTOR_PORT", str(free_port()))
        with serve(build_app(Settings.from_env())) as url:
            yield url, plan


def test_the_collector_answers_503_while_the_archive_refuses_and_stages_resent_events_once(
    collector_behind_proxy, warehouse_engine
):
    url, plan = collector_behind_proxy
    answers: list[tuple[int, str | None, float]] = []
    sent_ids = [f"c{n}" for n in range(8)]
    for event_id in sent_ids:
        message = {"type": "track", "messageId": event_id, "event": "Product Viewed", "userId": "u1"}
        while True:
            started = time.monotonic()
            response = requests.post(f"{url}/v1/track", json=message, auth=("wk_faults", ""), timeout=30)
            answers.append((response.status_code, response.headers.get("Retry-After"), time.monotonic() - started))
            if response.status_code == 200:
                break
            time.sleep(0.2)  # the test's stand-in for Retry-After, to stay short
    refused = [answer for answer in answers if answer[0] == 503]
    assert refused and all(retry_after is not None and retry_after.isdigit() for _, retry_after, _ in refused)
    assert {status for status, _, _ in answers} == {200, 503}
    assert plan.left == 0
    assert staged_ids(warehouse_engine) == Counter(sent_ids), "each event once: none of a 503 was kept"
    slowest = max(seconds for _, _, seconds in refused)
    print(f"\ncollector, archive answering SlowDown: {len(refused)} answers 503, the slowest after {slowest:.1f} s")
