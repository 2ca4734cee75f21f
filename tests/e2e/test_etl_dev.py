"""`etl dev` as a newcomer runs it: the UI within 90 s, Ctrl-C leaves nothing behind, the next run
finds the data, and bad configuration ends with one clear line.

What a running `etl dev` serves is checked on the test run's shared platform (`dev_platform`); only what needs a
start of its own starts one: a Ctrl-C during startup and the restart on the data it kept, and `etl dev` on
configured servers."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
import requests
from typer.testing import CliRunner

from etl_assets.cli import app
from etl_assets.localstack.dagster import location_statuses
from etl_assets.localstack.processes import free_port
from tests.e2e.dev_platform import ETL, DevPlatform, DevRun, ctrl_c
from tests.e2e.dev_platform import isolated_env as _isolated_env
from tests.e2e.dev_platform import start_etl_dev as _start
from tests.harness import head_revision

STARTUP_LIMIT = 90
"""The UI within 90 s of `etl dev` starting from an empty ETL_HOME: checked on the test run's shared platform."""
HANG_LIMIT = 180
"""How long the other starts may take before the test calls them hung: the test run's other worker shares the CPUs."""
STOP_LIMIT = 10


@pytest.fixture
def dev_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    yield _isolated_env(tmp_path / "etl-home")


def _ctrl_c(run: DevRun) -> tuple[float, list[psutil.Process]]:
    return ctrl_c(run, timeout=STOP_LIMIT + 5)


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(f"{name} "))


def test_etl_dev_serves_the_ui_and_its_services(dev_platform: DevPlatform):
    """The test run's shared `etl dev`, started from an empty ETL_HOME: its fixture's teardown is the Ctrl-C
    that must leave nothing behind; a restart on kept data is the next test's."""
    assert dev_platform.ready_after is not None and dev_platform.ready_after < STARTUP_LIMIT
    env, lines = dev_platform.env, dev_platform.run.lines
    ui = dev_platform.ui_url
    assert requests.get(f"{ui}/server_info", timeout=5).json()["dagster_version"]
    statuses = location_statuses(ui)
    assert statuses and all(status.error is None for status in statuses), statuses
    for part in ("postgres ", "warehouse ", "roles ", "s3 ", "events api ", "collector ", "dagster "):
        assert any(line.startswith(part) for line in lines), f"no line for {part.strip()}"
    assert any("new data in" in line for line in lines)

    collector = f"http://127.0.0.1:{env['ETL_COLLECTOR_PORT']}"
    assert requests.get(f"{collector}/healthz", timeout=5).json()["status"] == "ok"
    staged_before = _metric(requests.get(f"{collector}/metrics", timeout=5).text, "etl_collector_rows_staged_total")
    track = {"messageId": f"dev-check-{uuid.uuid4().hex}", "event": "Product Viewed", "userId": "u1"}
    answer = requests.post(f"{collector}/v1/track", json=track, auth=("local-write-key", ""), timeout=10)
    assert answer.status_code == 200, answer.text
    staged = _metric(requests.get(f"{collector}/metrics", timeout=5).text, "etl_collector_rows_staged_total")
    assert staged == staged_before + 1
    page = requests.get(
        f"http://127.0.0.1:{env['ETL_EVENTS_API_PORT']}/events?limit=5",
        headers={"Authorization": "Bearer local-demo-token"},
        timeout=5,
    )
    assert page.status_code in (200, 429, 500)

    with psycopg.connect(dev_platform.warehouse_url) as conn:
        connected_as = {
            user for (user,) in conn.execute("SELECT usename FROM pg_stat_activity WHERE datname = 'warehouse'")
        }
        memberships = set(
            conn.execute(
                "SELECT u.rolname, g.rolname FROM pg_auth_members m JOIN pg_roles u ON u.oid = m.member "
                "JOIN pg_roles g ON g.oid = m.roleid WHERE u.rolname IN ('ingest', 'transform', 'reader')"
            ).fetchall()
        )
    assert memberships == {("ingest", "etl_ingest"), ("transform", "etl_transform"), ("reader", "etl_reader")}
    assert "ingest" in connected_as  # the collector stored the track call as the ingestion role


def test_ctrl_c_during_startup_leaves_nothing_behind_and_the_next_start_keeps_the_data(dev_env):
    run = _start(dev_env)
    run.wait_for("s3 ", HANG_LIMIT)  # the warehouse is migrated; dagster dev is not started yet
    warehouse = f"postgresql://postgres@127.0.0.1:{dev_env['ETL_PG_PORT']}/warehouse"
    with psycopg.connect(warehouse) as conn:
        conn.execute("INSERT INTO source_cursors (source, cursor) VALUES ('marker', 'yesterday')")
    time.sleep(1)  # dagster dev is starting its webserver and daemon
    elapsed, survivors = _ctrl_c(run)
    assert survivors == []
    assert elapsed < STOP_LIMIT
    assert run.process.returncode == 0, "\n".join(run.lines)
    assert not any(line.startswith("ready") for line in run.lines)

    again = _start(dev_env)
    try:
        again.wait_for("ready", HANG_LIMIT)
        assert any("existing data in" in line for line in again.lines)
        with psycopg.connect(warehouse) as conn:
            cursor = conn.execute("SELECT cursor FROM source_cursors WHERE source = 'marker'").fetchone()
        assert cursor == ("yesterday",)
    finally:
        elapsed, survivors = _ctrl_c(again)
    assert survivors == []
    assert again.process.returncode == 0, "\n".join(again.lines)
    assert elapsed < STOP_LIMIT


def _one_line_failure(env: dict[str, str]) -> str:
    result = subprocess.run([ETL, "dev"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return errors[0]


def test_an_unreachable_database_url_is_one_line(tmp_path):
    env = _isolated_env(tmp_path, DATABASE_URL=f"postgresql://etl:secret@127.0.0.1:{free_port()}/warehouse")
    line = _one_line_failure(env)
    assert line.startswith("etl: cannot reach DATABASE_URL")
    assert "unset DATABASE_URL" in line
    assert "secret" not in line


def test_a_port_in_use_is_one_line(tmp_path):
    env = _isolated_env(tmp_path)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", int(env["ETL_UI_PORT"])))
        holder.listen()
        line = _one_line_failure(env)
    assert line == (
        f"etl: port {env['ETL_UI_PORT']} on 127.0.0.1 is in use (wanted for the Dagster UI): "
        "stop what holds it, or set ETL_UI_PORT to a free port"
    )


def _configured_servers_env(home: Path, warehouse_url: str, s3_endpoint: str, **extra: str) -> dict[str, str]:
    """`etl dev` pointed at the test session's PostgreSQL and S3 endpoint instead of starting its own."""
    return _isolated_env(
        home,
        DATABASE_URL=warehouse_url,
        AWS_ENDPOINT_URL_S3=s3_endpoint,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        **extra,
    )


def test_a_missing_bucket_is_one_line(tmp_path, s3_endpoint, warehouse_url):
    env = _configured_servers_env(tmp_path, warehouse_url, s3_endpoint, ETL_LANDING_BUCKET="no-such-landing-bucket")
    line = _one_line_failure(env)
    assert line == (
        f"etl: bucket 'no-such-landing-bucket' does not exist at {s3_endpoint}: "
        "create it, or set ETL_LANDING_BUCKET to one that does"
    )


def test_a_bad_setting_is_one_line(tmp_path):
    line = _one_line_failure(_isolated_env(tmp_path, ETL_UI_PORT="three-thousand"))
    assert line == "etl: ETL_UI_PORT='three-thousand' is not a port number: set it to an integer between 1 and 65535"


@pytest.mark.parametrize("command", [[], ["dev"], ["migrate"], ["seed"], ["config"], ["collector"], ["status"]])
def test_every_command_says_what_it_does(command):
    result = CliRunner().invoke(app, [*command, "--help"], prog_name="etl")
    assert result.exit_code == 0, result.output
    assert "Usage: etl" in result.stdout
    if command:
        assert len(result.stdout.split("Usage:")[1].strip().splitlines()) > 2


def test_the_installed_etl_command_starts():
    """The one check through the console script itself: the commands' help is read in-process above."""
    result = subprocess.run([ETL, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Usage: etl" in result.stdout


def test_etl_migrate_upgrades_the_configured_warehouse(tmp_path, empty_database_url):
    env = _isolated_env(tmp_path, DATABASE_URL=empty_database_url)
    result = subprocess.run([ETL, "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    head = head_revision()
    assert result.stdout.strip().endswith(f"at revision {head}")
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (head,)


def test_etl_migrate_without_a_server_is_one_line(tmp_path):
    env = _isolated_env(tmp_path, DATABASE_URL=f"postgresql://etl@127.0.0.1:{free_port()}/warehouse")
    result = subprocess.run([ETL, "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("etl: cannot reach the warehouse")


def _command_lines(pid: int) -> list[str]:
    lines = []
    for child in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            lines.append(" ".join(child.cmdline()))
    return lines


def test_configured_servers_are_used_and_none_is_started(tmp_path, warehouse_url, s3_endpoint, buckets):
    env = _configured_servers_env(
        tmp_path,
        warehouse_url,
        s3_endpoint,
        ETL_LANDING_BUCKET=buckets["landing"],
        ETL_ARCHIVE_BUCKET=buckets["archive"],
    )
    run = _start(env)
    try:
        run.wait_for("ready", HANG_LIMIT)
        started = _command_lines(run.process.pid)
        assert not any("pginstall/bin/postgres" in line for line in started), started
        assert not any("moto.server" in line for line in started), started
        assert any(line.startswith("postgres ") and line.endswith("(DATABASE_URL)") for line in run.lines)
        assert any(line.startswith(f"s3         {s3_endpoint}") and "configured store" in line for line in run.lines)
        server = warehouse_url.rsplit("/", 1)[0]
        with psycopg.connect(f"{server}/dagster") as conn:
            tables = {name for (name,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"runs", "event_logs"} <= tables
    finally:
        _, survivors = _ctrl_c(run)
    assert survivors == []
