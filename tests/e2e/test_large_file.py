"""A 1,000,000-event landing file into events with the run process's memory under 400 MB (slow)."""

import json
import os
import subprocess
import sys
from datetime import date

import pytest
from sqlalchemy import text

from etl_assets.demo.landing_files import write_large_file

EVENTS = 1_000_000
PEAK_RSS_LIMIT_MB = 400


@pytest.mark.slow
def test_a_million_event_file_loads_with_flat_memory(
    pipeline_env, s3, buckets, warehouse_engine, tmp_path, project_root
):
    path = tmp_path / "events-1m.jsonl"
    stats = write_large_file(path, EVENTS, seed=11, start=date(2025, 8, 1), days=2)
    key = f"landing/2025-08-01/{path.name}"
    s3.upload_file(str(path), buckets["landing"], key)
    head = s3.head_object(Bucket=buckets["landing"], Key=key)
    path.unlink()

    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.e2e.large_file_run",
            key,
            head["ETag"].strip('"'),
            str(head["ContentLength"]),
            "2025-08-01",
            "2025-08-02",
        ],
        cwd=project_root,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    report = json.loads(finished.stdout.strip().splitlines()[-1])
    print(f"\n1M-event file: {report}")
    assert report["success"]
    with warehouse_engine.connect() as conn:
        loaded = conn.scalar(text("SELECT count(*) FROM events"))
        pending = conn.scalar(text("SELECT count(*) FROM staging_status WHERE status = 'pending'"))
    assert loaded == stats.valid == EVENTS
    assert pending == 0
    assert report["peak_rss_mb"] < PEAK_RSS_LIMIT_MB
