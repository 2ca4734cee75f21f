"""`etl status` against real services: the warehouse and S3 endpoint of the test session, with neither Dagster
nor the collector running (they are reported down, with what to do), and with nothing running at all (one line).
The whole platform up is tests/e2e/test_etl_status.py."""

from __future__ import annotations

import subprocess
from datetime import date

from sqlalchemy import text

from etl_assets.localstack.processes import free_port
from tests.conftest import S3_CREDENTIALS
from tests.e2e.dev_platform import ETL, isolated_env, shop_events
from tests.harness import stage_payloads


def _status(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ETL, "status"], env=env, capture_output=True, text=True, timeout=120)


def test_status_reports_staging_quarantine_and_sources_and_names_what_is_down(
    tmp_path, warehouse_url, warehouse_engine, s3_endpoint, buckets
):
    stage_payloads(warehouse_engine, "status-batch", shop_events("status", date(2025, 6, 1), 30))
    stage_payloads(warehouse_engine, "status-next-day", shop_events("status2", date(2025, 6, 2), 5))
    with warehouse_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO quarantine (source, batch_id, record_no, stage, reason) VALUES "
                "('s3', 'status-batch', 900, 'parse', 'broken JSON'), ('s3', 'status-batch', 901, 'parse', 'broken JSON')"
            )
        )
        conn.execute(text("UPDATE raw_batches SET received_at = now() - interval '45 minutes'"))
    env = isolated_env(
        tmp_path,
        DATABASE_URL=warehouse_url,
        AWS_ENDPOINT_URL_S3=s3_endpoint,
        AWS_ACCESS_KEY_ID=S3_CREDENTIALS["aws_access_key_id"],
        AWS_SECRET_ACCESS_KEY=S3_CREDENTIALS["aws_secret_access_key"],
        ETL_LANDING_BUCKET=buckets["landing"],
        ETL_ARCHIVE_BUCKET=buckets["archive"],
    )
    result = _status(env)

    assert result.returncode == 1
    lines = result.stdout.splitlines()
    services = {line.split()[0]: line.split()[1] for line in lines[1:5]}
    assert services == {"warehouse": "up", "s3": "up", "dagster": "DOWN", "collector": "DOWN"}
    assert "staging     35 rows waiting to merge over 2 days (2025-06-01, 2025-06-02)" in lines
    assert any(line.startswith("quarantine  2 unresolved rows") and "broken JSON (2)" in line for line in lines)
    source = lines[next(number for number, line in enumerate(lines) if line.startswith("sources")) + 1]
    assert source.split()[0] == "s3"
    assert source.split()[1] == "WARN"  # silent 45 minutes: over the 30-minute warning, under the 120 to fail
    assert "2 batches" in source
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"etl: dagster is down at http://127.0.0.1:{env['ETL_UI_PORT']}")
    assert f"collector is down at http://127.0.0.1:{env['ETL_COLLECTOR_PORT']}" in errors[0]
    assert "start `uv run etl dev`" in errors[0]
    assert "Traceback" not in result.stdout + result.stderr


def test_status_with_nothing_running_is_one_line(tmp_path):
    env = isolated_env(tmp_path, ETL_S3_PORT=str(free_port()))
    result = _status(env)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("etl: the platform is not running: nothing answers")
    assert "start it with `uv run etl dev`" in result.stderr
