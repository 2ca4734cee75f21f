"""Transient errors provoked for real on PostgreSQL: the transaction is run again from the start and its rows
land once; a non-transient error is not retried.

Errors are injected by test-only triggers created in the test's own database: a trigger raises an error with
the chosen SQLSTATE (or terminates its own connection) the first N times it fires. The count is kept in a
sequence, because ``nextval`` is not undone when the failing transaction rolls back (a counter in a table
would be, and the trigger would fail forever).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import date

import dagster as dg
import orjson
import psycopg
import pytest
from sqlalchemy import Engine, select, text

from etl_assets.io_managers.postgres import WarehouseIOManager
from etl_assets.resources import WarehouseResource
from etl_assets.transform.records import ParsedRecord
from etl_assets.warehouse import enrichment, retries
from etl_assets.warehouse.schema import events
from etl_assets.warehouse.source_cursors import load_cursor, save_cursor
from etl_assets.warehouse.staging import BatchEntry, record_batch, stage_batch, stage_records
from tests.harness import ACCEPTED, merge_day, stage_payloads

DAY = date(2025, 8, 1)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retries, "WAIT_MULTIPLIER", 0.01)


@pytest.fixture
def retry_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger=retries.__name__)
    return caplog


def retry_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == retries.__name__]


def inject(engine: Engine, table: str, times: int, action: str) -> None:
    """Make every INSERT statement into ``table`` run ``action`` (PL/pgSQL) the first ``times`` times it fires."""
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SEQUENCE {table}_fired"))
        conn.execute(
            text(
                f"CREATE FUNCTION {table}_inject() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN IF nextval('{table}_fired') <= {times} THEN {action} END IF; RETURN NULL; END $$"
            )
        )
        conn.execute(
            text(
                f"CREATE TRIGGER {table}_inject BEFORE INSERT ON {table} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_inject()"
            )
        )


def raise_sqlstate(sqlstate: str) -> str:
    return f"RAISE EXCEPTION 'injected by the test' USING ERRCODE = '{sqlstate}';"


# The backend signals itself; pg_sleep lets it act on the signal at once (it checks for interrupts).
TERMINATE_OWN_CONNECTION = "PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5);"


def times_fired(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.scalar(text(f"SELECT last_value FROM {table}_fired"))


def page_view(number: int) -> dict:
    return {
        "id": f"e{number}",
        "type": "page_view",
        "timestamp": f"2025-08-01T10:{number:02d}:00Z",
        "user": {"id": "u1"},
        "page": {"url": f"https://shop.example/p{number}"},
    }


def records(count: int) -> list[ParsedRecord]:
    return [ParsedRecord(n, page_view(n), orjson.dumps(page_view(n)).decode()) for n in range(1, count + 1)]


def staged(engine: Engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT batch_id, record_no, count(*) FROM staging_events GROUP BY 1, 2 ORDER BY 1, 2")
        ).all()


def enter(engine: Engine, batch_id: str) -> None:
    record_batch(
        engine, batch_id=batch_id, source="s3", source_uri="s3://b/k", archive_key=None, sha256="0" * 64, byte_count=1
    )


def test_a_serialization_failure_while_staging_is_retried_and_each_record_staged_once(
    warehouse_engine, warehouse_url, retry_log
):
    enter(warehouse_engine, "b1")
    inject(warehouse_engine, "staging_events", 2, raise_sqlstate("40001"))
    counts = stage_records(warehouse_engine, "b1", "s3", records(5), ACCEPTED, chunk_size=2)
    assert (counts.records, counts.staged, counts.already_staged, counts.quarantined) == (5, 5, 0, 0)
    assert counts.days == {DAY: 5}
    assert staged(warehouse_engine) == [("b1", n, 1) for n in range(1, 6)]
    assert times_fired(warehouse_engine, "staging_events") == 5  # 2 failures, then one insert per chunk
    messages = retry_messages(retry_log)
    assert len(messages) == 2
    assert all("staging a chunk of batch b1" in m and "SerializationFailure, SQLSTATE 40001" in m for m in messages)
    port = warehouse_url.rsplit(":", 1)[1].split("/")[0]
    assert "127.0.0.1" not in retry_log.text and port not in retry_log.text


def test_a_page_and_its_cursor_commit_once_after_a_serialization_failure(warehouse_engine, retry_log):
    inject(warehouse_engine, "staging_events", 1, raise_sqlstate("40001"))
    entry = BatchEntry("api:demo:page1", "api:demo", "http://api/events", "raw/page1.json", "0" * 64, 10)
    counts = stage_batch(
        warehouse_engine,
        entry,
        iter(records(3)),  # a generator: stage_batch keeps the records for the retry
        ACCEPTED,
        before_commit=lambda conn: save_cursor(conn, "api:demo", "page2"),
    )
    assert (counts.records, counts.staged) == (3, 3)
    assert staged(warehouse_engine) == [("api:demo:page1", n, 1) for n in range(1, 4)]
    assert load_cursor(warehouse_engine, "api:demo") == "page2"
    with warehouse_engine.connect() as conn:
        assert conn.execute(text("SELECT batch_id, record_count FROM raw_batches")).all() == [("api:demo:page1", 3)]
    assert len(retry_messages(retry_log)) == 1


def test_a_check_violation_is_not_retried(warehouse_engine, retry_log):
    enter(warehouse_engine, "b1")
    inject(warehouse_engine, "staging_events", 1, raise_sqlstate("23514"))
    with pytest.raises(Exception) as raised:
        stage_records(warehouse_engine, "b1", "s3", records(3), ACCEPTED)
    assert retries.sqlstate_of(raised.value) == "23514"
    assert not retries.is_transient(raised.value)
    assert times_fired(warehouse_engine, "staging_events") == 1
    assert staged(warehouse_engine) == []
    assert retry_messages(retry_log) == []


def test_a_connection_terminated_mid_transaction_is_retried_and_stages_each_record_once(warehouse_engine, retry_log):
    enter(warehouse_engine, "b1")
    inject(warehouse_engine, "staging_events", 1, TERMINATE_OWN_CONNECTION)
    counts = stage_records(warehouse_engine, "b1", "s3", records(4), ACCEPTED, chunk_size=3)
    assert (counts.records, counts.staged, counts.already_staged) == (4, 4, 0)
    assert staged(warehouse_engine) == [("b1", n, 1) for n in range(1, 5)]
    (message,) = retry_messages(retry_log)
    assert "staging a chunk of batch b1" in message
    assert "57P01" in message or "connection invalidated" in message


def merged(engine: Engine) -> tuple[list[str], list[tuple]]:
    with engine.connect() as conn:
        ids = list(conn.scalars(select(events.c.event_id).order_by(events.c.event_id)))
        statuses = conn.execute(text("SELECT status, count(*) FROM staging_status GROUP BY 1")).all()
    return ids, statuses


def test_a_deadlock_in_a_days_merge_is_retried_with_the_days_rows_read_again(
    warehouse_engine, warehouse_url, retry_log
):
    stage_payloads(warehouse_engine, "b1", [page_view(n) for n in range(1, 4)])
    inject(warehouse_engine, "events", 1, raise_sqlstate("40P01"))
    counts = merge_day(warehouse_engine, DAY)
    assert counts.inserted == 3  # what the rolled-back attempt did is not counted
    assert merged(warehouse_engine) == (["e1", "e2", "e3"], [("succeeded", 3)])
    (message,) = retry_messages(retry_log)
    assert "merging events of 2025-08-01" in message and "DeadlockDetected, SQLSTATE 40P01" in message


def test_a_merge_whose_connection_another_session_terminates_is_retried(warehouse_engine, warehouse_url, retry_log):
    stage_payloads(warehouse_engine, "b1", [page_view(n) for n in range(1, 4)])
    inject(warehouse_engine, "events", 1, "PERFORM pg_sleep(60);")
    terminated: list[int] = []

    def terminate_the_sleeper() -> None:
        deadline = time.monotonic() + 30
        with psycopg.connect(warehouse_url, autocommit=True) as conn:
            while not terminated and time.monotonic() < deadline:
                sleepers = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'PgSleep'"
                ).fetchall()
                for (pid,) in sleepers:
                    conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    terminated.append(pid)
                time.sleep(0.05)

    killer = threading.Thread(target=terminate_the_sleeper)
    killer.start()
    try:
        counts = merge_day(warehouse_engine, DAY)
    finally:
        killer.join()
    assert len(terminated) == 1
    assert counts.inserted == 3
    assert merged(warehouse_engine) == (["e1", "e2", "e3"], [("succeeded", 3)])
    (message,) = retry_messages(retry_log)
    assert "merging events of 2025-08-01" in message
    assert "57P01" in message or "connection invalidated" in message


def test_a_rebuild_of_a_daily_table_is_retried_after_a_serialization_failure(
    warehouse_engine, warehouse_url, retry_log
):
    stage_payloads(warehouse_engine, "b1", [page_view(n) for n in range(1, 4)])
    merge_day(warehouse_engine, DAY)
    inject(warehouse_engine, "user_daily_activity", 1, raise_sqlstate("40001"))
    manager = WarehouseIOManager(warehouse=WarehouseResource(database_url=warehouse_url))
    context = dg.build_output_context(asset_key=dg.AssetKey("user_daily_activity"))
    manager.handle_output(context, enrichment.user_daily_activity_query(select(events)))
    with warehouse_engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM user_daily_activity")) == 1  # one user, one day
    (message,) = retry_messages(retry_log)
    assert "rebuilding user_daily_activity" in message and "SQLSTATE 40001" in message


def test_a_server_that_never_answers_fails_the_connection_at_the_resources_connect_timeout():
    """A listening socket that never speaks: without a connect timeout libpq would wait on it for good."""
    import socket

    from sqlalchemy.exc import OperationalError

    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        resource = WarehouseResource(database_url=f"postgresql://etl@127.0.0.1:{port}/warehouse", connect_timeout=1)
        engine = resource.get_engine()
        with pytest.raises(OperationalError, match="timeout"):
            engine.connect()
        engine.dispose()


def test_a_connect_timeout_in_the_url_wins_over_the_resources():
    from sqlalchemy import event

    resource = WarehouseResource(database_url="postgresql://etl@127.0.0.1:1/warehouse?connect_timeout=3")
    engine = resource.get_engine()
    seen: dict = {}

    @event.listens_for(engine, "do_connect")
    def capture(dialect, record, cargs, cparams):
        seen.update(cparams)
        raise ConnectionAbortedError("captured the connection parameters")

    with pytest.raises(Exception, match="captured"):
        engine.connect()
    engine.dispose()
    assert seen["connect_timeout"] == "3"
