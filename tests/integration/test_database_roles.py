"""Least privilege, enforced by PostgreSQL itself: each role of migration 0004 can do its job and nothing else.

Every forbidden action is attempted for real (``SET ROLE`` to the role, then the statement) and must be
refused by the server with ``insufficient_privilege``. The last test runs the pipeline with one login user
per role and DATABASE_URL pointing nowhere, so it passes only if every part connects as its own role.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors, sql
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from tests.harness import pipeline, stage_payloads

FORBIDDEN = {
    "etl_ingest": [
        "SELECT count(*) FROM events",
        "SELECT staging_id FROM event_ledger",
        "UPDATE event_ledger SET staging_id = 0",
        "DELETE FROM event_ledger",
        "SELECT count(*) FROM daily_funnel",
        "INSERT INTO events (event_id, occurred_at, event_type, source, batch_id, content_hash, ingested_at) "
        "VALUES ('x', '2025-03-01', 'page_view', 's3', 'b', 'h', now())",
        "DELETE FROM staging_events",
        "UPDATE staging_events SET batch_id = 'x'",
        "DELETE FROM batch_days",
        "DELETE FROM quarantine",
        "DELETE FROM raw_batches",
        "UPDATE raw_batches SET sha256 = 'x'",
        "CREATE TABLE sneaky (id int)",
        "SELECT etl_create_events_partition('2025-03-01')",
    ],
    "etl_transform": [
        "INSERT INTO staging_events (batch_id, record_no, source, payload) VALUES ('b', 1, 's3', '{}')",
        "DELETE FROM staging_events",
        "UPDATE staging_events SET payload = '{}'",
        "INSERT INTO raw_batches (batch_id, source, source_uri, sha256, byte_count) VALUES ('b', 's', 'u', 'x', 1)",
        "DELETE FROM quarantine",
        "SELECT count(*) FROM source_cursors",
        "DROP TABLE events",
        "TRUNCATE events",
        "CREATE TABLE sneaky (id int)",
        "ALTER TABLE events ADD COLUMN sneaky int",
    ],
    "etl_reader": [
        "SELECT count(*) FROM staging_events",
        "SELECT count(*) FROM quarantine",
        "SELECT count(*) FROM raw_batches",
        "SELECT count(*) FROM event_ledger",
        "INSERT INTO daily_funnel (day, viewers, carters, purchasers) VALUES ('2025-03-01', 1, 1, 1)",
        "DELETE FROM events",
        "UPDATE sessions SET events = 0",
        "CREATE TABLE sneaky (id int)",
    ],
}

ALLOWED = {
    "etl_ingest": [
        "SELECT count(*) FROM staging_events",
        "INSERT INTO raw_batches (batch_id, source, source_uri, sha256, byte_count) VALUES ('b', 's', 'u', 'x', 1)",
        "INSERT INTO staging_events (batch_id, record_no, source, payload) VALUES ('b', 1, 's3', '{}')",
        "UPDATE raw_batches SET record_count = 1, staged_at = now()",
        "INSERT INTO source_cursors (source) VALUES ('api:x')",
        "INSERT INTO batch_days (batch_id, day, source, staged_rows) VALUES ('b', '2025-03-01', 's3', 1)",
        "UPDATE event_ledger SET resent_through = 1 WHERE event_id = ANY('{e1}') "
        "AND payload_digest = ANY('{}'::bytea[]) AND occurred_at >= '2025-01-01' RETURNING event_id",
        "UPDATE raw_batches SET resent_count = 1",
    ],
    "etl_transform": [
        "SELECT count(*) FROM staging_events",
        "UPDATE staging_events SET transform_version = 'x', rejection = NULL",
        "UPDATE batch_days SET merged_rows = staged_rows, merged_through = 1",
        "SELECT count(*) FROM staging_status",
        "SELECT etl_create_events_partition('2025-03-01'); "
        "INSERT INTO events (event_id, occurred_at, event_type, person_id, source, batch_id, content_hash, ingested_at) "
        "VALUES ('x', '2025-03-01 12:00+00', 'page_view', 'p', 's3', 'b', 'h', now())",
        "INSERT INTO identity_links (anonymous_id, user_id, via, event_id, occurred_at, status) "
        "VALUES ('a', 'u', 'event', 'x', now(), 'linked')",
        "INSERT INTO users (user_id, first_seen_at) VALUES ('u', now())",
        "DELETE FROM rebuild_requests",
        "DELETE FROM daily_funnel",
    ],
    "etl_reader": [
        "SELECT count(*) FROM events",
        "SELECT count(*) FROM daily_funnel",
        "SELECT count(*) FROM user_daily_activity",
        "SELECT count(*) FROM identity_links",
    ],
}


@pytest.fixture
def owner(warehouse_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(make_url(warehouse_url).set(drivername="postgresql").render_as_string(False)) as conn:
        yield conn


def _as_role(conn: psycopg.Connection, role: str, statement: str) -> None:
    """Run ``statement`` as ``role`` and roll it back, whatever happens."""
    with conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        for part in statement.split("; "):
            conn.execute(part)


@pytest.mark.parametrize(
    ("role", "statement"), [(role, statement) for role, statements in FORBIDDEN.items() for statement in statements]
)
def test_postgresql_refuses_what_a_role_must_not_do(owner, role, statement):
    with pytest.raises(errors.InsufficientPrivilege):
        _as_role(owner, role, statement)


@pytest.mark.parametrize(
    ("role", "statement"), [(role, statement) for role, statements in ALLOWED.items() for statement in statements]
)
def test_a_role_can_do_its_job(owner, role, statement):
    _as_role(owner, role, statement)


def _login_user(owner: psycopg.Connection, group: str) -> str:
    user = f"{group.removeprefix('etl_')}_{uuid.uuid4().hex[:8]}"
    owner.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(sql.Identifier(user), sql.Identifier(group)))
    owner.commit()
    return user


def test_the_pipeline_runs_with_each_part_as_its_own_role(
    owner, warehouse_url, warehouse_engine: Engine, monkeypatch, pipeline_env, s3, buckets
):
    url = make_url(warehouse_url)
    for variable, group in (("ETL_INGEST_DATABASE_URL", "etl_ingest"), ("ETL_TRANSFORM_DATABASE_URL", "etl_transform")):
        user = _login_user(owner, group)
        monkeypatch.setenv(variable, url.set(username=user).render_as_string(hide_password=False))
    # Nothing may fall back to the owner: its URL now names a user that does not exist.
    monkeypatch.setenv("DATABASE_URL", url.set(username="nobody_here").render_as_string(hide_password=False))
    records = (
        b"".join(
            b'{"id": "e%d", "type": "page_view", "timestamp": "2025-03-01T10:00:%02dZ", "user_id": "u1"}\n' % (n, n)
            for n in range(20)
        )
        + b'{"id": "bad", "type": "", "timestamp": "2025-03-01T11:00:00Z", "user_id": "u1"}\n'
    )
    s3.put_object(Bucket=buckets["landing"], Key="landing/2025-03-01/roles.jsonl", Body=records)

    from etl_assets.definitions import defs

    with pipeline(defs()) as run:
        run.settle()
        assert run.runs and all(result.success for result in run.runs)
    with warehouse_engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM events")) == 20
        assert conn.scalar(text("SELECT count(*) FROM quarantine")) == 1
        assert conn.scalar(text("SELECT count(*) FROM user_daily_activity")) == 1


def test_the_ingest_role_cannot_be_used_for_the_merge(
    owner, warehouse_url, warehouse_engine, monkeypatch, pipeline_env
):
    """The other side of the test above: given the ingest role, the merge is refused, so roles are really in force."""
    url = make_url(warehouse_url)
    user = _login_user(owner, "etl_ingest")
    monkeypatch.setenv("ETL_TRANSFORM_DATABASE_URL", url.set(username=user).render_as_string(hide_password=False))
    stage_payloads(
        warehouse_engine, "b1", [{"id": "e1", "type": "page_view", "timestamp": "2025-03-01T10:00:00Z", "user_id": "u"}]
    )

    from etl_assets.definitions import defs

    result = (
        defs().resolve_job_def("daily_events_job").execute_in_process(partition_key="2025-03-01", raise_on_error=False)
    )
    assert not result.success
    failure = next(event for event in result.all_events if event.is_step_failure)
    assert "permission denied" in str(failure.event_specific_data.error)
