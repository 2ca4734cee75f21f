"""The warehouse behind PgBouncer in transaction mode (Debian's pgbouncer, a child process on 127.0.0.1).

In transaction mode a client's consecutive transactions may run on different server connections, so nothing
may outlive a transaction on the server: the merge's ``ON COMMIT DROP`` temporary tables and
``pg_advisory_xact_lock`` are transaction-scoped, and with ``connect_args(pgbouncer=True)`` psycopg prepares
no statements (PgBouncer < 1.21 does not track them). Staging and a day's merge run through it here and leave
the same rows as without it.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from etl_assets.localstack import processes
from etl_assets.localstack.postgres import SERVICE_USER, SUPERUSER, EmbeddedPostgres
from etl_assets.resources import WarehouseResource
from etl_assets.warehouse.connect_options import connect_args
from tests.harness import merge_day, stage_payloads
from tests.integration.test_events_merge import purchase

DAY = date(2025, 8, 1)
TINY = "tiny"
"""A database alias whose pool has one server connection: every client shares it."""


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None)
    assert found, "pgbouncer is not installed: `apt-get install -y pgbouncer` (.ci/run does it)"
    return found


@dataclass
class PgBouncer:
    port: int
    database: str

    def url(self, database: str | None = None) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database or self.database}"


@pytest.fixture
def pgbouncer(tmp_path: Path, postgres_server: EmbeddedPostgres, warehouse_url: str) -> Iterator[PgBouncer]:
    database = warehouse_url.rsplit("/", 1)[1]
    port = processes.free_port()
    userlist = tmp_path / "userlist.txt"
    userlist.write_text(f'"{SUPERUSER}" ""\n')
    config = tmp_path / "pgbouncer.ini"
    config.write_text(
        "\n".join(
            [
                "[databases]",
                f"* = host={postgres_server.host} port={postgres_server.port}",
                f"{TINY} = host={postgres_server.host} port={postgres_server.port} dbname={database} pool_size=1",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "pool_mode = transaction",
                "auth_type = trust",
                f"auth_file = {userlist}",
                f"admin_users = {SUPERUSER}",
                # The merge holds two server connections at once (its transaction and the reader of the day's
                # staged rows), so a pool needs at least two per concurrent merge.
                "default_pool_size = 4",
                "max_client_conn = 50",
                # pgbouncer refuses to run as root: it reads its files, then becomes the server's service user.
                *([f"user = {SERVICE_USER}"] if os.geteuid() == 0 else []),
                "",
            ]
        )
    )
    log_path = tmp_path / "pgbouncer.log"
    with open(log_path, "ab") as log:
        process = processes.start([pgbouncer_binary(), str(config)], log=log)
    bouncer = PgBouncer(port, database)

    def accepts_connections() -> bool:
        try:
            with psycopg.connect(bouncer.url(), connect_timeout=2, prepare_threshold=None):
                return True
        except psycopg.OperationalError:
            return False

    try:
        processes.wait_ready(process, accepts_connections, timeout=20, log_path=log_path)
        yield bouncer
    finally:
        processes.stop(process, sig=signal.SIGTERM)


def pgbouncer_stats(bouncer: PgBouncer, database: str) -> dict:
    """PgBouncer's own counters for ``database`` (its admin console speaks the simple query protocol only)."""
    with psycopg.connect(bouncer.url("pgbouncer"), autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
        cursor = conn.execute("SHOW STATS")
        columns = [column.name for column in cursor.description]
        rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    return next(row for row in rows if row["database"] == database)


def test_staging_and_a_days_merge_run_through_pgbouncer_in_transaction_mode(pgbouncer, warehouse_engine, monkeypatch):
    monkeypatch.setenv("ETL_DB_PGBOUNCER", "true")
    warehouse = WarehouseResource(database_url=pgbouncer.url(), pool_size=3, max_overflow=2)
    engine = warehouse.get_engine()
    with engine.connect() as conn:
        assert conn.connection.driver_connection.prepare_threshold is None
        assert conn.connection.driver_connection.info.port == pgbouncer.port

    # Many batches: each statement runs far more often than psycopg's default prepare threshold (5).
    for number in range(1, 9):
        stage_payloads(engine, f"file-{number}", [purchase(f"e{number}", f"2025-08-01T10:{number:02d}:00Z", "10.00")])
    stage_payloads(engine, "file-9", [purchase("e1", "2025-08-01T10:01:00Z", "12.50")])  # e1 again, changed

    for _ in range(2):  # the second merge finds nothing new and changes nothing
        merge_day(engine, DAY)

    with warehouse_engine.connect() as conn:  # read directly from PostgreSQL, not through PgBouncer
        rows = conn.execute(text("SELECT event_id, occurred_at, price, batch_id FROM events ORDER BY event_id")).all()
        statuses = conn.execute(text("SELECT status, count(*) FROM staging_status GROUP BY 1")).all()
        ledger = conn.scalar(text("SELECT count(*) FROM event_ledger"))
    assert [(row.event_id, row.occurred_at, float(row.price), row.batch_id) for row in rows] == [
        ("e1", datetime(2025, 8, 1, 10, 1, tzinfo=UTC), 12.5, "file-9"),
        *[(f"e{n}", datetime(2025, 8, 1, 10, n, tzinfo=UTC), 10.0, f"file-{n}") for n in range(2, 9)],
    ]
    assert statuses == [("succeeded", 9)]
    assert ledger == 8
    assert pgbouncer_stats(pgbouncer, pgbouncer.database)["total_xact_count"] > 20
    engine.dispose()


def repeat_on_one_server_connection(bouncer: PgBouncer, **options) -> None:
    """Two clients take turns running one statement, each transaction on the alias's single server connection."""
    with (
        psycopg.connect(bouncer.url(TINY), autocommit=True, **options) as first,
        psycopg.connect(bouncer.url(TINY), autocommit=True, **options) as second,
    ):
        for _ in range(8):
            for conn in (first, second):
                assert conn.execute("SELECT %s::int + 1", (1,)).fetchone() == (2,)


def test_psycopg_must_not_prepare_statements_behind_pgbouncer(pgbouncer):
    with pytest.raises(psycopg.errors.DuplicatePreparedStatement):
        repeat_on_one_server_connection(pgbouncer)  # psycopg's default: prepare after 5 runs
    repeat_on_one_server_connection(pgbouncer, **connect_args(pgbouncer=True))
