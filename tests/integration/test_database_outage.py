"""PostgreSQL stopped and started again in the middle of a run: the run waits, retries, and ends with the right rows.

The server is one of the test's own (the session's is shared by other tests). To stop it at a known point, the
test holds a lock that the run's next write needs: once the run waits for it (``pg_stat_activity`` shows the
wait), the server is stopped with a fast shutdown (every session is terminated, open transactions roll back),
stays down for a few seconds and starts again. The run's transactions are re-run by the platform's transient
retries; nothing in the test helps it along.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from io import BytesIO

import dagster as dg
import psycopg
import pytest
import requests
from sqlalchemy import text

from etl_assets.collector.app import CollectorConfig, create_app
from etl_assets.collector.writer import StagingWriter
from etl_assets.demo.landing_files import generate_events, write_landing_file
from etl_assets.localstack.postgres import EmbeddedPostgres
from etl_assets.localstack.processes import free_port
from etl_assets.transform.normalize import AcceptedTimes
from etl_assets.warehouse import migrate, retries
from etl_assets.warehouse.engine import create_warehouse_engine
from tests.asgi_server import serve
from tests.harness import pipeline

DAY = date(2025, 8, 1)
EVENTS = 5_000
DOWN_SECONDS = 3.0
COLLECTOR_WRITE_KEY = "wk_outage"
COLLECTOR_DOWN_SECONDS = 4.0


@dataclass
class RestartablePostgres:
    """A migrated PostgreSQL of the test's own, started and stopped only by ``keeper``: a thread that lives as long
    as the server may (a child started by a thread gets its death signal when that thread ends)."""

    server: EmbeddedPostgres
    keeper: ThreadPoolExecutor

    def url(self) -> str:
        return self.server.url()


@pytest.fixture
def restartable_postgres(tmp_path) -> Iterator[RestartablePostgres]:
    server = EmbeddedPostgres(tmp_path / "pg", free_port())
    keeper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="postgres-keeper")
    keeper.submit(server.start).result()
    engine = create_warehouse_engine(server.url(), pool_size=1, max_overflow=0)
    migrate.upgrade(engine)
    engine.dispose()
    yield RestartablePostgres(server, keeper)
    keeper.submit(server.stop).result()
    keeper.shutdown()


@pytest.fixture
def outage_env(pipeline_env: dict, restartable_postgres: RestartablePostgres, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The pipeline's environment, with the warehouse on the restartable server."""
    monkeypatch.setenv("DATABASE_URL", restartable_postgres.url())
    return {**pipeline_env, "DATABASE_URL": restartable_postgres.url()}


@dataclass
class Outage:
    """While the ``with`` block runs: hold a lock on ``table`` so that writes to it wait; once a session waits for
    it, stop the server (fast shutdown), keep it down ``down`` seconds, start it again."""

    postgres: RestartablePostgres
    table: str
    down: float = DOWN_SECONDS
    waiting_query: str = ""
    _locked: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Outage:
        self._done = self.postgres.keeper.submit(self._run)
        if not self._locked.wait(10):
            self._done.result(timeout=0)  # raises what kept the lock from being taken
            raise AssertionError(f"the lock on {self.table} was not taken within 10 s")
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.result(timeout=90)

    def _run(self) -> None:
        server = self.postgres.server
        try:
            with psycopg.connect(server.url(), autocommit=True) as watcher:
                locker = psycopg.connect(server.url())
                locker.execute(f"LOCK TABLE {self.table} IN EXCLUSIVE MODE")  # reads go on, writes wait
                self._locked.set()
                self.waiting_query = self._wait_for_a_blocked_writer(watcher)
                server.stop()  # fast shutdown: ends every session, this one's lock with it
                locker.close()
        finally:
            if server.process is None:
                time.sleep(self.down)
                server.start()

    def _wait_for_a_blocked_writer(self, watcher: psycopg.Connection) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            row = watcher.execute(
                "SELECT query FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
            ).fetchone()
            if row is not None:
                return row[0]
            time.sleep(0.05)
        raise AssertionError(f"no session came to wait for {self.table} within 60 s")


def landing_file(s3, bucket: str) -> set[str]:
    """Put a file of ``EVENTS`` valid events of one day in the landing bucket; return their ids."""
    events = list(generate_events(seed=5, start=DAY, days=1, events=EVENTS))
    out = BytesIO()
    stats = write_landing_file(out, events, "jsonl", False, seed=5)
    assert (stats.valid, stats.bad) == (EVENTS, 0)
    s3.put_object(Bucket=bucket, Key=f"landing/{DAY}/outage.jsonl", Body=out.getvalue())
    return {event["id"] for event in events}


def warehouse_rows(url: str) -> tuple[set[str], dict[str, int]]:
    """The event ids in ``events``, and counts of the ledger, staging and quarantine."""
    engine = create_warehouse_engine(url, pool_size=1, max_overflow=0)
    with engine.connect() as conn:
        event_ids = set(conn.scalars(text("SELECT event_id FROM events")))
        counts = (
            conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM raw_batches) AS batches,"
                    " (SELECT count(*) FROM staging_events) AS staged,"
                    " (SELECT count(DISTINCT (batch_id, record_no)) FROM staging_events) AS staged_records,"
                    " (SELECT count(*) FROM staging_status WHERE status <> 'succeeded') AS not_merged,"
                    " (SELECT count(*) FROM quarantine) AS quarantined"
                )
            )
            .mappings()
            .one()
        )
    engine.dispose()
    return event_ids, dict(counts)


EXPECTED_COUNTS = {"batches": 1, "staged": EVENTS, "staged_records": EVENTS, "not_merged": 0, "quarantined": 0}


def step_retries(result: dg.ExecuteInProcessResult) -> int:
    return sum(event.event_type_value == "STEP_UP_FOR_RETRY" for event in result.all_events)


def retried(caplog: pytest.LogCaptureFixture, what: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == retries.__name__ and what in r.getMessage()]


def test_runs_ride_out_restarts_in_the_middle_of_a_copy_and_of_a_merge_and_load_each_event_once(
    outage_env: dict, restartable_postgres: RestartablePostgres, s3, buckets: dict[str, str], definitions, caplog
):
    """The ingest run loses the server while its COPY into staging waits; the merge run (staged_days_sensor's)
    loses it inside the day's merge transaction, its normalized rows already copied into the server, as it comes to
    write ``events``. Each run's transactions are run again once the server is back, within the run: no step
    retry, no second run."""
    caplog.set_level(logging.WARNING, logger=retries.__name__)
    ids = landing_file(s3, buckets["landing"])
    with pipeline(definitions) as platform:
        requests = platform.tick("landing_files_sensor")
        with Outage(restartable_postgres, "staging_events") as copy_outage:
            [ingest] = platform.execute("landing_files_sensor", requests)
        requests = platform.tick("staged_days_sensor")
        with Outage(restartable_postgres, "events") as merge_outage:
            [merge] = platform.execute("staged_days_sensor", requests)
    assert copy_outage.waiting_query.startswith('COPY "staging_events"')
    assert "events" in merge_outage.waiting_query  # the day's partition or the upsert, after the rows were read
    assert retried(caplog, "staging a chunk of batch landing/2025-08-01/outage.jsonl")
    assert retried(caplog, f"merging events of {DAY}")
    assert step_retries(ingest) == step_retries(merge) == 0
    checks = {e.check_name: e.passed for e in merge.get_asset_check_evaluations() if e.check_name.startswith("events")}
    assert checks == {"events_valid": True, "events_reconciled": True}
    event_ids, counts = warehouse_rows(outage_env["DATABASE_URL"])
    assert event_ids == ids
    assert counts == EXPECTED_COUNTS
    assert s3.list_objects_v2(Bucket=buckets["archive"])["KeyCount"] == 1


@dataclass(frozen=True)
class Reply:
    """The collector's answer to one request, and when it was sent and answered."""

    sent: float
    answered: float
    status: int
    retry_after: str | None
    error: str | None
    event_ids: tuple[str, ...]


class SegmentSender:
    """A client like Segment's libraries: sends batches of new events until told to stop, and sends a batch the
    collector answered 503 again after its ``Retry-After``, until it is answered 200."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self.session = requests.Session()
        self.session.auth = (COLLECTOR_WRITE_KEY, "")
        self.replies: list[Reply] = []
        self.failure: BaseException | None = None

    def run(self, stop: threading.Event) -> None:
        """Send until ``stop``; what ends the loop otherwise is kept in ``failure`` for the test to raise."""
        try:
            self._send_until(stop)
        except BaseException as error:
            self.failure = error

    def _send_until(self, stop: threading.Event) -> None:
        number = 0
        while not stop.is_set():
            number += 1
            ids = tuple(f"{self.name}-{number}-{n}" for n in range(3))
            while True:
                reply = self.send(ids)
                if reply.status != 503:
                    break
                time.sleep(int(reply.retry_after or 1))

    def send(self, ids: tuple[str, ...]) -> Reply:
        batch = [{"type": "track", "messageId": i, "event": "Product Viewed", "userId": "u1"} for i in ids]
        sent = time.monotonic()
        response = self.session.post(
            f"{self.url}/v1/batch", json={"batch": batch, "sentAt": datetime.now(UTC).isoformat()}, timeout=30
        )
        error = response.json().get("error") if response.status_code != 200 else None
        reply = Reply(sent, time.monotonic(), response.status_code, response.headers.get("Retry-After"), error, ids)
        self.replies.append(reply)
        return reply


def test_the_collector_answers_503_while_the_database_is_away_and_stages_each_resent_event_once(
    restartable_postgres: RestartablePostgres, s3, buckets: dict[str, str]
):
    engine = create_warehouse_engine(restartable_postgres.url(), pool_size=2, max_overflow=0, connect_timeout=3)
    writer = StagingWriter(
        engine,
        s3,
        buckets["archive"],
        lambda: AcceptedTimes.through_today(date(2025, 1, 1), datetime.now(UTC)),
        retry_seconds=1.0,  # shorter than the default, so that several requests fall inside the outage
    )
    app = create_app(
        CollectorConfig(write_keys={COLLECTOR_WRITE_KEY: "segment"}, retry_after_seconds=1),
        writer.write,
        lambda: None,
    )
    server = restartable_postgres.server
    stop_sending = threading.Event()
    with serve(app) as url:
        senders = [SegmentSender(url, f"s{n}") for n in range(3)]
        threads = [threading.Thread(target=sender.run, args=(stop_sending,)) for sender in senders]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        restartable_postgres.keeper.submit(server.stop).result()
        down_from = time.monotonic()
        time.sleep(COLLECTOR_DOWN_SECONDS)
        down_until = time.monotonic()
        restartable_postgres.keeper.submit(server.start).result()
        time.sleep(1.0)
        stop_sending.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a sender did not finish within 60 s of being stopped"
    for sender in senders:
        if sender.failure is not None:
            raise sender.failure
    replies = [reply for sender in senders for reply in sender.replies]
    assert {reply.status for reply in replies} == {200, 503}
    refused = [reply for reply in replies if reply.status == 503]
    assert all(reply.retry_after in {"1", "2"} and reply.error == "storage_unavailable" for reply in refused)
    while_down = [reply for reply in replies if down_from < reply.sent and reply.answered < down_until]
    assert while_down, "no request was answered while the database was away"
    assert [reply.status for reply in while_down] == [503] * len(while_down)
    accepted = [event_id for reply in replies if reply.status == 200 for event_id in reply.event_ids]
    with engine.connect() as conn:
        staged = Counter(conn.scalars(text("SELECT event_id FROM staging_events")))
        batches = conn.scalar(text("SELECT count(*) FROM raw_batches"))
    engine.dispose()
    assert len(accepted) == len(set(accepted))
    assert staged == Counter(accepted), "every event answered 200 is staged, once; none answered 503 is"
    assert s3.list_objects_v2(Bucket=buckets["archive"])["KeyCount"] == batches
    print(
        f"\ncollector outage: {len(replies)} answers, {len(refused)} of them 503 ({len(while_down)} while the "
        f"database was away), {len(accepted)} events staged once"
    )
