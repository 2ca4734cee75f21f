"""Each outside call retries only what can succeed: a permanent error (a 4xx other than 408/429, access denied, a
missing object, a bad request, a statement the database refuses) is met once; a transient one (5xx, throttling, a
serialization failure) is met and retried. A step that fails permanently is not retried by its retry policy, and
its first line says what to do. Real parts throughout: the S3 endpoint behind a fault proxy, an HTTP API on
loopback, PostgreSQL.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, date, datetime

import dagster as dg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from etl_assets.sources.events_api import ApiError, ApiSource, EventsApiClient
from etl_assets.sources.landing import LandingObject
from etl_assets.sources.landing_ingest import ingest_landing_object
from etl_assets.sources.outside_errors import sort_error
from etl_assets.sources.s3 import s3_client
from etl_assets.transform.normalize import AcceptedTimes
from etl_assets.warehouse import retries
from etl_assets.warehouse.retries import in_transaction
from tests.asgi_server import serve
from tests.conftest import S3_CREDENTIALS
from tests.fault_proxy import Answer, FaultsInTurn, ProxiedRequest, create_proxy

ACCEPTED = AcceptedTimes.through_today(date(2025, 1, 1), datetime.now(UTC))
ACCESS_DENIED = Answer(
    403,
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>',
    {"Content-Type": "application/xml"},
)
SLOW_DOWN = Answer(
    503,
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Reduce your rate.</Message></Error>',
    {"Content-Type": "application/xml"},
)


def is_download(request: ProxiedRequest) -> bool:
    return request.method == "GET" and request.path.count("/") >= 2 and not request.has_query("list-type")


def is_copy(request: ProxiedRequest) -> bool:
    return request.method == "PUT" and "x-amz-copy-source" in request.headers


def served(proxy, matches) -> list[int | None]:
    return [item.status for item in proxy.state.served if matches(item.request)]


def landing_object(s3, bucket: str, name: str) -> LandingObject:
    key = f"landing/retries/{name}.jsonl"
    body = json.dumps({"id": f"{name}-1", "type": "page_view", "timestamp": "2025-09-20T10:00:00Z"}).encode() + b"\n"
    etag = s3.put_object(Bucket=bucket, Key=key, Body=body)["ETag"].strip('"')
    return LandingObject(key, etag, len(body))


def quarantine_reasons(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(text("SELECT reason FROM quarantine ORDER BY id")))


# -- S3 -------------------------------------------------------------------------------------------


def test_s3_access_denied_is_asked_once_and_the_file_becomes_one_quarantine_row(
    s3, buckets: dict[str, str], s3_endpoint: str, warehouse_engine: Engine
):
    obj = landing_object(s3, buckets["landing"], "denied")
    proxy = create_proxy(s3_endpoint, FaultsInTurn(is_download, [ACCESS_DENIED] * 10))
    with serve(proxy) as proxy_url:
        client = s3_client(proxy_url, "us-east-1", **S3_CREDENTIALS)
        ingested = ingest_landing_object(
            client,
            warehouse_engine,
            obj,
            landing_bucket=buckets["landing"],
            archive_bucket=buckets["archive"],
            accepted=ACCEPTED,
        )
    assert served(proxy, is_download) == [403]
    assert (ingested.archive_key, ingested.counts.records, ingested.counts.quarantined) == (None, 1, 1)
    assert quarantine_reasons(warehouse_engine) == [
        "could not read the file (AccessDenied, HTTP 403: the platform's credentials may not read it); "
        f"s3://{buckets['landing']}/{obj.key}, not archived"
    ]


def test_s3_slow_down_is_retried_and_the_file_loads(
    s3, buckets: dict[str, str], s3_endpoint: str, warehouse_engine: Engine
):
    obj = landing_object(s3, buckets["landing"], "slow")
    proxy = create_proxy(s3_endpoint, FaultsInTurn(is_download, [SLOW_DOWN, SLOW_DOWN]))
    with serve(proxy) as proxy_url:
        client = s3_client(proxy_url, "us-east-1", **S3_CREDENTIALS)
        ingested = ingest_landing_object(
            client,
            warehouse_engine,
            obj,
            landing_bucket=buckets["landing"],
            archive_bucket=buckets["archive"],
            accepted=ACCEPTED,
        )
    assert served(proxy, is_download) == [503, 503, 200]
    assert (ingested.counts.records, ingested.counts.staged) == (1, 1)


def test_a_step_the_archive_refuses_for_good_fails_once_without_step_retries_and_says_what_to_do(
    pipeline_env: dict, s3, buckets: dict[str, str], s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
):
    obj = landing_object(s3, buckets["landing"], "archive-refused")
    proxy = create_proxy(s3_endpoint, FaultsInTurn(is_copy, [ACCESS_DENIED] * 10))
    with serve(proxy) as proxy_url, dg.instance_for_test() as instance:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy_url)
        from etl_assets.definitions import defs

        job = defs().resolve_job_def("ingest_landing_file_job")
        config = {"key": obj.key, "etag": obj.etag, "size": obj.size}
        result = job.execute_in_process(
            run_config={"ops": {"ingest_landing_file": {"config": config}}}, instance=instance, raise_on_error=False
        )
    assert not result.success
    assert served(proxy, is_copy) == [403]
    assert [
        event.event_type_value for event in result.all_events if event.event_type_value == "STEP_UP_FOR_RETRY"
    ] == []
    (failure,) = result.get_step_failure_events()
    first_line = failure.step_failure_data.error.message.splitlines()[0]
    assert "the object store refused the request (AccessDenied, HTTP 403): check the bucket names" in first_line
    assert "then re-execute the run" in first_line


# -- the events API -------------------------------------------------------------------------------


def api_answering(statuses: list[int]) -> tuple[Starlette, list[int]]:
    """An events API on loopback that answers ``statuses`` in turn (200 with an empty page once they run out)."""
    seen: list[int] = []
    planned = iter(statuses)

    async def events(request: Request) -> Response:
        status = next(planned, 200)
        seen.append(status)
        if status == 200:
            return JSONResponse({"data": [], "next_cursor": None})
        return JSONResponse({"error": "planned"}, status_code=status)

    return Starlette(routes=[Route("/events", events)]), seen


def test_an_api_bad_request_is_sent_once_and_is_permanent():
    app, seen = api_answering([400])
    with serve(app) as url:
        client = EventsApiClient(ApiSource("bad", f"{url}/events", token_env=None, backoff_factor=0.01))
        with pytest.raises(ApiError) as raised:
            client.fetch(None)
    assert seen == [400]
    assert raised.value.transient is False
    assert sort_error(raised.value).transient is False


@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_an_api_answer_that_can_go_away_is_retried(status: int):
    app, seen = api_answering([status, status])
    with serve(app) as url:
        client = EventsApiClient(ApiSource("flaky", f"{url}/events", token_env=None, backoff_factor=0.01))
        page = client.fetch(None)
    assert seen == [status, status, 200]
    assert page.retried_statuses == (status, status)


def test_a_poll_the_api_refuses_for_good_fails_once_without_step_retries(
    pipeline_env: dict, monkeypatch: pytest.MonkeyPatch
):
    app, seen = api_answering([404] * 10)
    with serve(app) as url, dg.instance_for_test() as instance:
        monkeypatch.setenv("ETL_EVENTS_API_URL", f"{url}/events")
        monkeypatch.setenv("ETL_EVENTS_API_TOKEN", "a-token")
        from etl_assets.definitions import defs

        result = (
            defs().resolve_job_def("events_api_poll_job").execute_in_process(instance=instance, raise_on_error=False)
        )
    assert not result.success
    assert seen == [404]
    assert [event for event in result.all_events if event.event_type_value == "STEP_UP_FOR_RETRY"] == []
    (failure,) = result.get_step_failure_events()
    assert "answered 404" in failure.step_failure_data.error.message.splitlines()[0]


# -- the database ---------------------------------------------------------------------------------


def test_a_statement_the_database_refuses_is_run_once(warehouse_engine: Engine):
    attempts = itertools.count(1)
    made: list[int] = []

    def work(conn) -> None:
        made.append(next(attempts))
        conn.execute(text("SELECT 1 / 0"))

    with pytest.raises(DBAPIError) as raised:
        in_transaction(warehouse_engine, work, what="dividing by zero")
    assert made == [1]
    failure = sort_error(raised.value)
    assert failure.transient is False
    assert failure.message.startswith("the warehouse refused a statement (DivisionByZero, SQLSTATE 22012)")
    assert failure.message.endswith("(division by zero)")


def test_a_serialization_failure_the_server_raises_is_retried(warehouse_engine: Engine, monkeypatch):
    monkeypatch.setattr(retries, "WAIT_MULTIPLIER", 0.01)
    made: list[int] = []

    def work(conn) -> str:
        made.append(len(made) + 1)
        if len(made) == 1:
            conn.execute(text("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$"))
        return "done"

    assert in_transaction(warehouse_engine, work, what="a conflicting transaction") == "done"
    assert made == [1, 2]
