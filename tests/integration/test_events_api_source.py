"""The events API source over real HTTP on loopback: the demo API (with its faults) served by uvicorn, the
client with urllib3's retries, pages staged into a real PostgreSQL and archived in a real S3 endpoint."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Engine, func, select

from etl_assets.demo.events_api_server import FeedSettings, create_app, encode_cursor
from etl_assets.sources import events_api
from etl_assets.sources.events_api import ApiError, ApiSource, EventsApiClient, load_cursor, poll_source
from etl_assets.transform.normalize import AcceptedTimes
from etl_assets.warehouse.schema import raw_batches, source_cursors, staging_events
from tests.asgi_server import serve
from tests.fault_proxy import Answer, FaultsInTurn, ProxiedRequest, create_proxy

TOKEN_ENV = "TEST_EVENTS_API_TOKEN"
ACCEPTED = AcceptedTimes.through_today(date(2025, 1, 1), datetime.now(UTC))
STILL = 0.0001
"""Events per second of a feed that does not grow while a test runs: its backlog is all there is."""


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(TOKEN_ENV, "secret-token")
    return "secret-token"


def feed(**overrides) -> FeedSettings:
    values = {"token": "secret-token", "events_per_second": STILL, "rate_limit_share": 0.0, "error_share": 0.0}
    values.update(overrides)
    return FeedSettings(**values)


def source(url: str, **overrides) -> ApiSource:
    values = {"token_env": TOKEN_ENV, "page_size": 100, "backoff_factor": 0.05, "backoff_max": 0.2}
    values.update(overrides)
    return ApiSource("demo", f"{url}/events", **values)


def staged_ids(engine: Engine) -> Counter[str]:
    with engine.connect() as conn:
        return Counter(conn.scalars(select(staging_events.c.event_id).where(staging_events.c.source == "api:demo")))


def feed_ids(count: int, seed: int = 7) -> Counter[str]:
    return Counter(f"api_{seed}_{number:010d}" for number in range(count))


def test_client_waits_out_429_retry_after_and_retries_5xx():
    app = create_app(feed(backlog=50, scripted_statuses=[429, 500, 503], retry_after_seconds=1))
    with serve(app) as url:
        client = EventsApiClient(source(url))
        page = client.fetch(None)
    served = app.state.served
    assert [request.status for request in served] == [429, 500, 503, 200]
    assert page.retries == 3
    assert page.retried_statuses == (429, 500, 503)
    assert served[1].at - served[0].at >= 1.0, "the retry came before the Retry-After second was over"
    assert b'"api_7_0000000049"' in page.body


def test_client_gives_up_after_its_retries_with_a_clear_error():
    app = create_app(feed(backlog=10, error_share=1.0))
    with serve(app) as url, pytest.raises(ApiError, match="kept failing after 2 retries"):
        EventsApiClient(source(url, max_retries=2)).fetch(None)
    assert [request.status for request in app.state.served] == [500, 500, 500]


def test_a_wrong_token_is_not_retried_and_names_the_variable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(TOKEN_ENV, "wrong")
    app = create_app(feed(backlog=10))
    with serve(app) as url, pytest.raises(ApiError, match=f"401.*{TOKEN_ENV}"):
        EventsApiClient(source(url)).fetch(None)
    assert len(app.state.served) == 1


def test_an_unset_token_variable_is_a_one_line_config_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(TOKEN_ENV)
    with pytest.raises(Exception, match=f"{TOKEN_ENV} is not set"):
        EventsApiClient(source("http://127.0.0.1:9"))


@pytest.mark.parametrize("next_mode", ["cursor", "links.next", "Link"])
def test_poll_stages_every_event_once_and_moves_the_cursor_with_each_page(
    next_mode: str, warehouse_engine: Engine, s3, buckets: dict[str, str]
):
    overrides = {} if next_mode == "cursor" else {"next_link_field": next_mode}
    app = create_app(feed(backlog=1_234, rate_limit_share=0.2, error_share=0.1, retry_after_seconds=0))
    with serve(app) as url:
        client = EventsApiClient(source(url, **overrides))
        report = poll_source(client, warehouse_engine, s3, buckets["archive"], ACCEPTED)
        again = poll_source(client, warehouse_engine, s3, buckets["archive"], ACCEPTED)
    assert staged_ids(warehouse_engine) == feed_ids(1_234)
    assert (report.records, report.staged, report.quarantined) == (1_234, 1_234, 0)
    assert report.caught_up and report.pages == 14  # 13 pages of events, then one that says there is nothing new
    assert report.retries == len(report.retried_statuses) > 0
    assert (again.records, again.pages) == (0, 1)
    with warehouse_engine.connect() as conn:
        batches = conn.execute(select(raw_batches).where(raw_batches.c.source == "api:demo")).mappings().all()
        cursor = conn.scalar(select(source_cursors.c.cursor).where(source_cursors.c.source == "api:demo"))
    assert len(batches) == 13
    assert sum(batch["record_count"] for batch in batches) == 1_234
    assert cursor == report.end_cursor
    archived = s3.get_object(Bucket=buckets["archive"], Key=batches[0]["archive_key"])
    assert archived["Metadata"]["sha256"] == batches[0]["sha256"]


def test_poll_picks_up_events_that_appear_later(warehouse_engine: Engine, s3, buckets: dict[str, str]):
    app = create_app(feed(backlog=30, events_per_second=50.0))
    with serve(app) as url:
        client = EventsApiClient(source(url))
        first = poll_source(client, warehouse_engine, s3, buckets["archive"], ACCEPTED)
        time.sleep(0.5)
        second = poll_source(client, warehouse_engine, s3, buckets["archive"], ACCEPTED)
    assert first.records >= 30 and second.records > 0
    total = first.records + second.records
    assert staged_ids(warehouse_engine) == feed_ids(total)


def test_crash_before_the_cursor_commits_replays_that_page_without_duplicates(
    warehouse_engine: Engine, s3, buckets: dict[str, str], monkeypatch: pytest.MonkeyPatch
):
    """The process dies while page 3 and its cursor are being committed: the page's rows roll back with the
    cursor, and the next run fetches page 3 again."""
    real_save = events_api.save_cursor
    calls = {"n": 0}

    def dies_on_third_page(conn, name, cursor):
        calls["n"] += 1
        if calls["n"] == 3:
            raise SystemExit("killed while committing page 3")
        real_save(conn, name, cursor)

    app = create_app(feed(backlog=750))
    with serve(app) as url:
        client = EventsApiClient(source(url))
        monkeypatch.setattr(events_api, "save_cursor", dies_on_third_page)
        with pytest.raises(SystemExit):
            poll_source(client, warehouse_engine, s3, buckets["archive"], ACCEPTED)
        assert staged_ids(warehouse_engine) == feed_ids(200)
        monkeypatch.setattr(events_api, "save_cursor", real_save)
        resumed = poll_source(client, warehouse_engine, s3, buckets["archive"], ACCEPTED)
    assert staged_ids(warehouse_engine) == feed_ids(750)
    assert resumed.records == 550 and resumed.already_staged == 0


def test_crash_after_a_page_commits_resumes_at_the_next_page(warehouse_engine: Engine, s3, buckets: dict[str, str]):
    """The process dies right after page 4 committed: the next run starts at page 5, no gap, no repeat."""

    def dies_after_fourth_page(report, counts):
        if report.pages == 4:
            raise SystemExit("killed after page 4")

    app = create_app(feed(backlog=650))
    with serve(app) as url:
        client = EventsApiClient(source(url))
        with pytest.raises(SystemExit):
            poll_source(client, warehouse_engine, s3, buckets["archive"], ACCEPTED, on_page=dies_after_fourth_page)
        assert staged_ids(warehouse_engine) == feed_ids(400)
        cursor_after_crash = load_cursor(warehouse_engine, "api:demo")
        resumed = poll_source(client, warehouse_engine, s3, buckets["archive"], ACCEPTED)
    first_cursor_asked = app.state.served[4].cursor
    assert first_cursor_asked == cursor_after_crash
    assert resumed.records == 250
    assert staged_ids(warehouse_engine) == feed_ids(650)


def test_a_page_fetched_again_is_the_same_batch_and_stages_nothing_twice(
    warehouse_engine: Engine, s3, buckets: dict[str, str]
):
    """A crash after the commit but before the run could report is replayed as the same batch id."""
    app = create_app(feed(backlog=100))
    with serve(app) as url:
        client = EventsApiClient(source(url))
        poll_source(client, warehouse_engine, s3, buckets["archive"], ACCEPTED)
        with warehouse_engine.begin() as conn:
            conn.execute(source_cursors.delete())
        again = poll_source(client, warehouse_engine, s3, buckets["archive"], ACCEPTED)
    assert again.records == 100 and again.staged == 0 and again.already_staged == 100
    with warehouse_engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(raw_batches)) == 1
    assert staged_ids(warehouse_engine) == feed_ids(100)


def rate_limited(retry_after: str) -> Answer:
    return Answer(429, b'{"error": "rate limited"}', {"Retry-After": retry_after, "Content-Type": "application/json"})


SERVER_ERROR = Answer(500, b'{"error": "internal error"}', {"Content-Type": "application/json"})
UNAVAILABLE = Answer(503, b"upstream unavailable", {"Content-Type": "text/plain"})


def is_page_request(request: ProxiedRequest) -> bool:
    return request.path == "/events"


def cursor_after_pages(pages: int) -> str:
    """The cursor the demo API gives after ``pages`` pages of 100 events."""
    return encode_cursor(pages * 100)


def test_a_429_storm_and_5xx_in_the_middle_of_a_poll_are_waited_out_and_the_cursor_ends_right(
    warehouse_engine: Engine, s3, buckets: dict[str, str]
):
    """After three pages the API answers 429 (one asking for an hour, cut to the source's ``retry_after_max``),
    then 500s and a 503, seven times in a row: the client retries the same page each time and the poll ends
    with every event staged once and the cursor after the last page."""
    storm = [rate_limited("1"), rate_limited("3600"), rate_limited("0"), rate_limited("0")]
    storm += [SERVER_ERROR, SERVER_ERROR, UNAVAILABLE]
    plan = FaultsInTurn(is_page_request, storm, after=3)
    api = create_app(feed(backlog=1_000))
    with serve(api) as api_url, serve(create_proxy(api_url, plan)) as proxy_url:
        client = EventsApiClient(source(proxy_url, retry_after_max=1))
        report = poll_source(client, warehouse_engine, s3, buckets["archive"], ACCEPTED)
        again = poll_source(client, warehouse_engine, s3, buckets["archive"], ACCEPTED)
    assert plan.left == 0
    assert report.retried_statuses == [429, 429, 429, 429, 500, 500, 503]
    assert (report.records, report.staged, report.pages, report.caught_up) == (1_000, 1_000, 11, True)
    assert (again.records, again.pages) == (0, 1)
    assert staged_ids(warehouse_engine) == feed_ids(1_000)
    asked = [served.cursor for served in api.state.served]
    assert asked[3] == cursor_after_pages(3), "after the storm the client asked for the fourth page, not another"
    assert load_cursor(warehouse_engine, "api:demo") == report.end_cursor == asked[-1]


def test_a_storm_longer_than_the_retries_fails_the_poll_at_its_last_page_and_the_next_poll_finishes(
    warehouse_engine: Engine, s3, buckets: dict[str, str]
):
    """Twelve 429s in a row after four pages outlast the client's eight retries: the poll fails with a clear error,
    the cursor stays after the fourth page (committed with it), and the next poll (the sensor's next run) goes on
    from there: every event staged once, no page skipped or staged twice."""
    plan = FaultsInTurn(is_page_request, [rate_limited("0")] * 12, after=4)
    api = create_app(feed(backlog=700))
    with serve(api) as api_url, serve(create_proxy(api_url, plan)) as proxy_url:
        client = EventsApiClient(source(proxy_url))
        with pytest.raises(ApiError, match="kept failing after 8 retries"):
            poll_source(client, warehouse_engine, s3, buckets["archive"], ACCEPTED)
        assert staged_ids(warehouse_engine) == feed_ids(400)
        assert load_cursor(warehouse_engine, "api:demo") == cursor_after_pages(4)
        resumed = poll_source(client, warehouse_engine, s3, buckets["archive"], ACCEPTED)
    assert plan.left == 0
    assert resumed.retried_statuses == [429, 429, 429]
    assert (resumed.records, resumed.already_staged, resumed.caught_up) == (300, 0, True)
    assert staged_ids(warehouse_engine) == feed_ids(700)
    with warehouse_engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(raw_batches)) == 7
